package pdinfer.layers;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Conv2d with zero padding: any kernel, stride, padding, dilation, groups (KERNELS.md, Conv2d). */
public final class Conv2d extends Layer {
    private int inChannels;
    private int outChannels;
    private int[] kernelSize; // [kh, kw]
    private int[] stride; // [sh, sw]
    private int[] padding; // [top, left, bottom, right]
    private int[] dilation; // [dh, dw]
    private int groups;
    private boolean hasBias;
    private float[] weight; // (Co, Ci/groups, KH, KW)
    private float[] bias; // (Co,), only if hasBias

    public Conv2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Conv2d";
    }

    @Override
    public List<String> paramNames() {
        return List.of("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                "bias");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        inChannels = intParam(params, "in_channels");
        outChannels = intParam(params, "out_channels");
        kernelSize = pairParam(params, "kernel_size");
        stride = pairParam(params, "stride");
        padding = paddingParam(params);
        dilation = pairParam(params, "dilation");
        groups = intParam(params, "groups");
        hasBias = boolParam(params, "bias");
        if (inChannels % groups != 0 || outChannels % groups != 0) {
            throw error("groups=" + groups + " must divide in_channels=" + inChannels + " and out_channels="
                    + outChannels);
        }
    }

    @Override
    public Map<String, int[]> tensorShapes() {
        Map<String, int[]> shapes = new LinkedHashMap<>();
        shapes.put("weight", new int[] {outChannels, inChannels / groups, kernelSize[0], kernelSize[1]});
        if (hasBias) {
            shapes.put("bias", new int[] {outChannels});
        }
        return shapes;
    }

    @Override
    public void loadModel(Map<String, Tensor> tensors) {
        weight = tensors.get("weight").data;
        bias = hasBias ? tensors.get("bias").data : null;
    }

    public Window window() {
        return Window.of(kernelSize, stride, padding, dilation);
    }

    public int groups() {
        return groups;
    }

    /** One input and one output channel per group (more than one group). */
    public boolean isDepthwise() {
        return 1 < groups && groups == inChannels && groups == outChannels;
    }

    /** The bias (Co,), or null without one. */
    public float[] bias() {
        return hasBias ? bias.clone() : null;
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        if (shape[1] != inChannels) {
            throw error("expects " + inChannels + " input channels, got shape " + Tensor.shapeString(shape));
        }
        int outH = windowOutputSize(shape[2], padding[0], padding[2], kernelSize[0], stride[0], dilation[0], false);
        int outW = windowOutputSize(shape[3], padding[1], padding[3], kernelSize[1], stride[1], dilation[1], false);
        if (outH < 1 || outW < 1) {
            throw error("input " + shape[2] + "x" + shape[3] + " is smaller than the dilated kernel");
        }
        return new int[] {shape[0], outChannels, outH, outW};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, Ci, H, W)
        int[] outShape = outputShape(List.of(x.shape));
        int batch = x.shape[0];
        int inH = x.shape[2];
        int inW = x.shape[3];
        int outH = outShape[2];
        int outW = outShape[3];
        int groupIn = inChannels / groups;
        int groupOut = outChannels / groups;
        int kernelH = kernelSize[0];
        int kernelW = kernelSize[1];
        float[] in = x.data;
        float[] out = new float[batch * outChannels * outH * outW];
        int o = 0;
        for (int n = 0; n < batch; n++) {
            for (int co = 0; co < outChannels; co++) {
                int ciBase = (co / groupOut) * groupIn;
                for (int oy = 0; oy < outH; oy++) {
                    for (int ox = 0; ox < outW; ox++) {
                        float acc = 0.0f;
                        for (int ci = 0; ci < groupIn; ci++) {
                            int plane = (n * inChannels + ciBase + ci) * inH;
                            int taps = (co * groupIn + ci) * kernelH;
                            for (int ky = 0; ky < kernelH; ky++) {
                                int iy = oy * stride[0] - padding[0] + ky * dilation[0];
                                if (iy < 0 || iy >= inH) {
                                    continue; // padding row: skipped, not added as 0
                                }
                                for (int kx = 0; kx < kernelW; kx++) {
                                    int ix = ox * stride[1] - padding[1] + kx * dilation[1];
                                    if (ix < 0 || ix >= inW) {
                                        continue;
                                    }
                                    // Rounded product, then rounded sum: never Math.fma.
                                    acc += in[(plane + iy) * inW + ix] * weight[(taps + ky) * kernelW + kx];
                                }
                            }
                        }
                        if (hasBias) {
                            acc += bias[co];
                        }
                        out[o++] = acc;
                    }
                }
            }
        }
        return new Tensor(outShape, out);
    }
}
