package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** (N, d1, d2, ...) -> (N, d1 * d2 * ...) in C order: the same values, a new shape. */
public final class Flatten extends Layer {
    public Flatten(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Flatten";
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        if (shape.length < 2) {
            throw error("input must have at least 2 dimensions, got shape " + Tensor.shapeString(shape));
        }
        return new int[] {shape[0], (int) (Tensor.size(shape) / shape[0])};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        return xs[0].reshape(outputShape(List.of(xs[0].shape)));
    }
}
