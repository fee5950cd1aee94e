package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = 0 if x < 0, 6 if x > 6, else x (so -0 and NaN pass through). Any shape. */
public final class ReLU6 extends Layer {
    public ReLU6(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ReLU6";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = in[i];
            out[i] = v < 0 ? 0.0f : (v > 6 ? 6.0f : v);
        }
        return new Tensor(xs[0].shape, out);
    }
}
