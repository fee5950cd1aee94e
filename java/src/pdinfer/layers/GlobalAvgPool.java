package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Mean over H and W: float32 sum (y, then x, ascending) / float32(H * W). */
public final class GlobalAvgPool extends Layer {
    private boolean keepdim;

    public GlobalAvgPool(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "GlobalAvgPool";
    }

    @Override
    public List<String> paramNames() {
        return List.of("keepdim");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        keepdim = boolParam(params, "keepdim");
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        return keepdim ? new int[] {shape[0], shape[1], 1, 1} : new int[] {shape[0], shape[1]};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, H, W)
        int planes = x.shape[0] * x.shape[1];
        int plane = x.shape[2] * x.shape[3];
        float[] in = x.data;
        float[] out = new float[planes];
        for (int p = 0; p < planes; p++) {
            float acc = 0.0f;
            for (int i = p * plane; i < (p + 1) * plane; i++) { // row-major: y outer, x inner
                acc += in[i];
            }
            out[p] = acc / (float) plane;
        }
        return new Tensor(outputShape(List.of(x.shape)), out);
    }
}
