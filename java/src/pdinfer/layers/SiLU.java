package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = float32(x / (1 + exp(-x))), all in double. Any shape. */
public final class SiLU extends Layer {
    public SiLU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "SiLU";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            double v = in[i];
            out[i] = (float) (v / (1.0 + StrictMath.exp(-v)));
        }
        return new Tensor(xs[0].shape, out);
    }
}
