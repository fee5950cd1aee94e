package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = x * min(max(x + 3, 0), 6) / 6: four float32 operations, left to right. Any shape. */
public final class Hardswish extends Layer {
    public Hardswish(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Hardswish";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = in[i];
            float t = v + 3.0f;
            t = t < 0 ? 0.0f : (t > 6 ? 6.0f : t);
            out[i] = v * t / 6.0f;
        }
        return new Tensor(xs[0].shape, out);
    }
}
