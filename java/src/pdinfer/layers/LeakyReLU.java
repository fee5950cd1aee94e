package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** y = x if x > 0 else x * negativeSlope, with the slope rounded to float32. Any shape. */
public final class LeakyReLU extends Layer {
    private float negativeSlope;

    public LeakyReLU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "LeakyReLU";
    }

    @Override
    public List<String> paramNames() {
        return List.of("negative_slope");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        negativeSlope = (float) floatParam(params, "negative_slope");
    }

    /** The slope, rounded to float32. */
    public float negativeSlope() {
        return negativeSlope;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = in[i];
            out[i] = v > 0 ? v : v * negativeSlope;
        }
        return new Tensor(xs[0].shape, out);
    }
}
