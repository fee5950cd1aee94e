package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Zeros around each (H, W) plane: padding [top, left, bottom, right]; the values are copied unchanged. */
public final class ZeroPad2d extends Layer {
    private int[] padding; // [top, left, bottom, right]

    public ZeroPad2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ZeroPad2d";
    }

    @Override
    public List<String> paramNames() {
        return List.of("padding");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        padding = paddingParam(params);
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        return new int[] {shape[0], shape[1], shape[2] + padding[0] + padding[2], shape[3] + padding[1] + padding[3]};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, H, W)
        int[] outShape = outputShape(List.of(x.shape));
        int planes = x.shape[0] * x.shape[1];
        int inH = x.shape[2];
        int inW = x.shape[3];
        int outH = outShape[2];
        int outW = outShape[3];
        float[] out = new float[planes * outH * outW]; // +0.0f everywhere to start with
        for (int plane = 0; plane < planes; plane++) {
            for (int y = 0; y < inH; y++) {
                int to = (plane * outH + y + padding[0]) * outW + padding[1];
                System.arraycopy(x.data, (plane * inH + y) * inW, out, to, inW);
            }
        }
        return new Tensor(outShape, out);
    }
}
