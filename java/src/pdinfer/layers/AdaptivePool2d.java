package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Shared parameters, output shape and bin rule of the adaptive pools. */
abstract class AdaptivePool2d extends Layer {
    protected int[] outputSize; // [outH, outW]

    protected AdaptivePool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public List<String> paramNames() {
        return List.of("output_size");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        outputSize = pairParam(params, "output_size");
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        return new int[] {shape[0], shape[1], outputSize[0], outputSize[1]};
    }

    /** PyTorch's bin i of `bins` over `length`: [floor(i*length/bins), ceil((i+1)*length/bins)). */
    static int binStart(int i, int length, int bins) {
        return (int) ((long) i * length / bins); // long: i * length can pass 2^31
    }

    static int binEnd(int i, int length, int bins) {
        return (int) ((((long) i + 1) * length + bins - 1) / bins);
    }

    /** One bin's value; `in` holds the plane at `base`, rows [h0, h1), columns [w0, w1), row length inW. */
    abstract float pool(float[] in, int base, int inW, int h0, int h1, int w0, int w1);

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, H, W)
        int planes = x.shape[0] * x.shape[1];
        int inH = x.shape[2];
        int inW = x.shape[3];
        int outH = outputSize[0];
        int outW = outputSize[1];
        float[] out = new float[planes * outH * outW];
        int o = 0;
        for (int plane = 0; plane < planes; plane++) {
            for (int oy = 0; oy < outH; oy++) {
                for (int ox = 0; ox < outW; ox++) {
                    out[o++] = pool(x.data, plane * inH * inW, inW, binStart(oy, inH, outH), binEnd(oy, inH, outH),
                            binStart(ox, inW, outW), binEnd(ox, inW, outW));
                }
            }
        }
        return new Tensor(outputShape(List.of(x.shape)), out);
    }
}
