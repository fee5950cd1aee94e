package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Channels [start, end) of the input (dim 1): y[n, c, ...] = x[n, start + c, ...]. */
public final class Slice extends ChannelLayer {
    private int start;
    private int end;

    public Slice(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Slice";
    }

    @Override
    public List<String> paramNames() {
        return List.of("dim", "start", "end");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        checkDim(params);
        start = intParam(params, "start", 0, 1 << 24);
        end = intParam(params, "end");
        if (end <= start) {
            throw error("param 'end' (" + end + ") must be greater than 'start' (" + start + ")");
        }
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectChannels(shape, "input");
        if (end > shape[1]) {
            throw error("channels [" + start + ", " + end + ") do not fit an input of " + shape[1] + " channels (shape "
                    + Tensor.shapeString(shape) + ")");
        }
        int[] out = shape.clone();
        out[1] = end - start;
        return out;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, ...)
        int[] shape = outputShape(List.of(x.shape));
        int inC = x.shape[1];
        int outC = shape[1];
        int plane = plane(shape);
        float[] out = new float[Math.toIntExact(Tensor.size(shape))];
        for (int n = 0; n < shape[0]; n++) {
            for (int c = 0; c < outC; c++) {
                for (int p = 0; p < plane; p++) {
                    out[(n * outC + c) * plane + p] = x.data[(n * inC + start + c) * plane + p];
                }
            }
        }
        return new Tensor(shape, out);
    }
}
