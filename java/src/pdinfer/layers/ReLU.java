package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = x if x > 0 else +0 (so -0 and NaN become +0). Any shape. */
public final class ReLU extends Layer {
    public ReLU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ReLU";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            out[i] = in[i] > 0 ? in[i] : 0.0f; // not Math.max: it keeps -0 and NaN
        }
        return new Tensor(xs[0].shape, out);
    }
}
