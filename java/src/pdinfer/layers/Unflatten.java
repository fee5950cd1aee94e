package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** (N, C*H*W) -> (N, C, H, W) in C order: the same values, a new shape. */
public final class Unflatten extends Layer {
    private int[] shape; // (C, H, W)

    public Unflatten(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Unflatten";
    }

    @Override
    public List<String> paramNames() {
        return List.of("shape");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        Object value = params.get("shape");
        if (!(value instanceof List) || ((List<?>) value).size() != 3 || !((List<?>) value).stream()
                .allMatch(v -> v instanceof Long && (Long) v >= 1 && (Long) v <= 1 << 24)) {
            throw error("param 'shape' must be [C, H, W] integers in [1, " + (1 << 24) + "], got " + value);
        }
        shape = ((List<?>) value).stream().mapToInt(v -> (int) (long) (Long) v).toArray();
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] in = inShapes.get(0);
        expectRank(in, 2);
        if (in[1] != Tensor.size(shape)) {
            throw error("input of " + in[1] + " features cannot be viewed as " + Tensor.shapeString(shape));
        }
        return new int[] {in[0], shape[0], shape[1], shape[2]};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        return xs[0].reshape(outputShape(List.of(xs[0].shape)));
    }
}
