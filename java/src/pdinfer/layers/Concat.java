package pdinfer.layers;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Concatenation along dim 1 of two or more inputs equal in every other dimension: a copy. */
public final class Concat extends ChannelLayer {
    public Concat(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Concat";
    }

    @Override
    public List<String> paramNames() {
        return List.of("dim");
    }

    @Override
    public int numInputs() {
        return 2;
    }

    @Override
    public boolean variadic() {
        return true;
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        checkDim(params);
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] first = inShapes.get(0);
        expectChannels(first, "input");
        int[] out = first.clone();
        out[1] = 0;
        for (int i = 0; i < inShapes.size(); i++) {
            int[] shape = inShapes.get(i);
            int[] rest = shape.clone();
            if (rest.length == first.length) {
                rest[1] = first[1];
            }
            if (!Arrays.equals(rest, first)) {
                throw error("input " + i + " has shape " + Tensor.shapeString(shape) + "; every input must match input 0's shape "
                        + Tensor.shapeString(first) + " except in dim 1");
            }
            out[1] += shape[1];
        }
        return out;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        List<int[]> shapes = new ArrayList<>();
        for (Tensor x : xs) {
            shapes.add(x.shape);
        }
        int[] shape = outputShape(shapes);
        int batch = shape[0];
        int outC = shape[1];
        int plane = plane(shape);
        float[] out = new float[Math.toIntExact(Tensor.size(shape))];
        int offset = 0;
        for (Tensor x : xs) { // (N, Cx, ...)
            int channels = x.shape[1];
            for (int n = 0; n < batch; n++) {
                for (int c = 0; c < channels; c++) {
                    for (int p = 0; p < plane; p++) {
                        out[(n * outC + offset + c) * plane + p] = x.data[(n * channels + c) * plane + p];
                    }
                }
            }
            offset += channels;
        }
        return new Tensor(shape, out);
    }
}
