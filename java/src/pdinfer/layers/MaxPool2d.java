package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** MaxPool2d: the largest in-bounds tap, ky then kx ascending; a tap wins only if strictly larger. */
public final class MaxPool2d extends Pool2d {
    public MaxPool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "MaxPool2d";
    }

    @Override
    public List<String> paramNames() {
        return List.of("kernel_size", "stride", "padding", "dilation", "ceil_mode");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        dilation = pairParam(params, "dilation");
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
        float[] in = x.data;
        float[] out = new float[planes * outH * outW];
        int o = 0;
        for (int plane = 0; plane < planes; plane++) {
            for (int oy = 0; oy < outH; oy++) {
                for (int ox = 0; ox < outW; ox++) {
                    float best = Float.NEGATIVE_INFINITY;
                    for (int ky = 0; ky < kernelSize[0]; ky++) {
                        int iy = oy * stride[0] - padding[0] + ky * dilation[0];
                        if (iy < 0 || iy >= inH) {
                            continue;
                        }
                        for (int kx = 0; kx < kernelSize[1]; kx++) {
                            int ix = ox * stride[1] - padding[1] + kx * dilation[1];
                            if (ix < 0 || ix >= inW) {
                                continue;
                            }
                            float v = in[(plane * inH + iy) * inW + ix];
                            if (v > best) { // not Math.max: ties keep the first tap (+0 vs -0), NaN never wins
                                best = v;
                            }
                        }
                    }
                    out[o++] = best;
                }
            }
        }
        return new Tensor(outShape, out);
    }
}
