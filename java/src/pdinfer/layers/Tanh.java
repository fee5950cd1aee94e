package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = float32(tanh(double(x))). Any shape. */
public final class Tanh extends Layer {
    public Tanh(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Tanh";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            out[i] = (float) StrictMath.tanh((double) in[i]);
        }
        return new Tensor(xs[0].shape, out);
    }
}
