package pdinfer.layers;

import java.util.List;

/** AdaptiveAvgPool2d: float32 sum of each bin (rows, then columns, ascending) / float32(its cell count). */
public final class AdaptiveAvgPool2d extends AdaptivePool2d {
    public AdaptiveAvgPool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "AdaptiveAvgPool2d";
    }

    @Override
    float pool(float[] in, int base, int inW, int h0, int h1, int w0, int w1) {
        float acc = 0.0f;
        for (int iy = h0; iy < h1; iy++) {
            for (int ix = w0; ix < w1; ix++) {
                acc += in[base + iy * inW + ix];
            }
        }
        return acc / (float) ((h1 - h0) * (w1 - w0));
    }
}
