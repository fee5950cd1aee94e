package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** y = x if x > 0 else float32(double(alpha) * expm1(double(x))), alpha rounded to float32. Any shape. */
public final class ELU extends Layer {
    private float alpha;

    public ELU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ELU";
    }

    @Override
    public List<String> paramNames() {
        return List.of("alpha");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        alpha = (float) floatParam(params, "alpha");
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = in[i];
            out[i] = v > 0 ? v : (float) ((double) alpha * StrictMath.expm1((double) v));
        }
        return new Tensor(xs[0].shape, out);
    }
}
