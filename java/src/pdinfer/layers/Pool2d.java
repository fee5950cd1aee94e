package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Shared parameter handling and output size of the windowed pools. */
abstract class Pool2d extends Layer {
    protected int[] kernelSize; // [kh, kw]
    protected int[] stride; // [sh, sw]
    protected int[] padding; // [top, left, bottom, right]
    protected int[] dilation = {1, 1};
    protected boolean ceilMode;

    protected Pool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        kernelSize = pairParam(params, "kernel_size");
        stride = pairParam(params, "stride");
        padding = paddingParam(params);
        ceilMode = boolParam(params, "ceil_mode");
        if (Math.max(padding[0], padding[2]) > kernelSize[0] / 2 || Math.max(padding[1], padding[3]) > kernelSize[1] / 2) {
            throw error("padding " + Tensor.shapeString(padding) + " must be at most half the kernel "
                    + Tensor.shapeString(kernelSize));
        }
    }

    public Window window() {
        return Window.of(kernelSize, stride, padding, dilation);
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        int outH = windowOutputSize(shape[2], padding[0], padding[2], kernelSize[0], stride[0], dilation[0], ceilMode);
        int outW = windowOutputSize(shape[3], padding[1], padding[3], kernelSize[1], stride[1], dilation[1], ceilMode);
        if (outH < 1 || outW < 1) {
            throw error("input " + shape[2] + "x" + shape[3] + " is smaller than the pooling window");
        }
        return new int[] {shape[0], shape[1], outH, outW};
    }
}
