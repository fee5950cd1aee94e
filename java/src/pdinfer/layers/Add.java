package pdinfer.layers;

import java.util.Arrays;
import java.util.List;

import pdinfer.Tensor;

/** y = a + b (float32), two inputs of the same shape. */
public final class Add extends Layer {
    public Add(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Add";
    }

    @Override
    public int numInputs() {
        return 2;
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        if (!Arrays.equals(inShapes.get(0), inShapes.get(1))) {
            throw error("inputs must have the same shape, got " + Tensor.shapeString(inShapes.get(0)) + " and "
                    + Tensor.shapeString(inShapes.get(1)));
        }
        return inShapes.get(0);
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] a = xs[0].data;
        float[] b = xs[1].data;
        float[] out = new float[a.length];
        for (int i = 0; i < a.length; i++) {
            out[i] = a[i] + b[i];
        }
        return new Tensor(xs[0].shape, out);
    }
}
