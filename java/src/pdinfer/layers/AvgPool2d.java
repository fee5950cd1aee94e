package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/**
 * AvgPool2d: float32 sum of the in-bounds cells (iy then ix ascending) / float32(divisor).
 * divisor: divisorOverride if > 0; else the window clipped to the padded input if
 * countIncludePad; else the number of in-bounds cells.
 */
public final class AvgPool2d extends Pool2d {
    private boolean countIncludePad;
    private int divisorOverride;

    public AvgPool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "AvgPool2d";
    }

    @Override
    public List<String> paramNames() {
        return List.of("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        countIncludePad = boolParam(params, "count_include_pad");
        divisorOverride = intParam(params, "divisor_override", 0, 1 << 24);
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
                int h0 = oy * stride[0] - padding[0];
                int h1 = Math.min(h0 + kernelSize[0], inH + padding[2]);
                for (int ox = 0; ox < outW; ox++) {
                    int w0 = ox * stride[1] - padding[1];
                    int w1 = Math.min(w0 + kernelSize[1], inW + padding[3]);
                    float acc = 0.0f;
                    int cells = 0;
                    for (int iy = Math.max(h0, 0); iy < Math.min(h1, inH); iy++) {
                        for (int ix = Math.max(w0, 0); ix < Math.min(w1, inW); ix++) {
                            acc += in[(plane * inH + iy) * inW + ix];
                            cells++;
                        }
                    }
                    int divisor;
                    if (divisorOverride > 0) {
                        divisor = divisorOverride;
                    } else if (countIncludePad) {
                        divisor = (h1 - h0) * (w1 - w0);
                    } else {
                        divisor = cells;
                    }
                    out[o++] = acc / (float) divisor;
                }
            }
        }
        return new Tensor(outShape, out);
    }
}
