package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/** A reduction over the channels with keepdim: (N, C, H, W) -> (N, 1, H, W), channels ascending. */
abstract class ChannelReduction extends Layer {
    protected ChannelReduction(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        return new int[] {shape[0], 1, shape[2], shape[3]};
    }

    /** The value of one position: channel c is at in[base + c * stride], c = 0 .. channels-1. */
    abstract float reduce(float[] in, int base, int stride, int channels);

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, H, W)
        int channels = x.shape[1];
        int plane = x.shape[2] * x.shape[3];
        float[] out = new float[x.shape[0] * plane];
        for (int n = 0; n < x.shape[0]; n++) {
            for (int p = 0; p < plane; p++) {
                out[n * plane + p] = reduce(x.data, n * channels * plane + p, plane, channels);
            }
        }
        return new Tensor(outputShape(List.of(x.shape)), out);
    }
}
