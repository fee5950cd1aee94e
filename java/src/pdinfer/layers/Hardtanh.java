package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** y = minVal if x < minVal, maxVal if x > maxVal, else x; bounds rounded to float32. Any shape. */
public final class Hardtanh extends Layer {
    private float minVal;
    private float maxVal;

    public Hardtanh(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Hardtanh";
    }

    @Override
    public List<String> paramNames() {
        return List.of("min_val", "max_val");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        minVal = (float) floatParam(params, "min_val");
        maxVal = (float) floatParam(params, "max_val");
        if (!(minVal <= maxVal)) {
            throw error("min_val=" + params.get("min_val") + " must not exceed max_val=" + params.get("max_val"));
        }
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = in[i];
            out[i] = v < minVal ? minVal : (v > maxVal ? maxVal : v);
        }
        return new Tensor(xs[0].shape, out);
    }
}
