package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = min(max(x + 3, 0), 6) / 6 in float32. Any shape. */
public final class Hardsigmoid extends Layer {
    public Hardsigmoid(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Hardsigmoid";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float t = in[i] + 3.0f;
            t = t < 0 ? 0.0f : (t > 6 ? 6.0f : t);
            out[i] = t / 6.0f;
        }
        return new Tensor(xs[0].shape, out);
    }
}
