package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** y = float32(1 / (1 + exp(-double(x)))), all in double. Any shape. */
public final class Sigmoid extends Layer {
    public Sigmoid(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Sigmoid";
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            // StrictMath: the same fdlibm result on every JVM (Math.exp may differ by JIT/CPU).
            out[i] = (float) (1.0 / (1.0 + StrictMath.exp(-(double) in[i])));
        }
        return new Tensor(xs[0].shape, out);
    }
}
