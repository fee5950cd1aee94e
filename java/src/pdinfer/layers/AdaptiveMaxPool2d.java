package pdinfer.layers;

import java.util.List;

/** AdaptiveMaxPool2d: the largest value of each bin (rows, then columns; strictly larger wins, from -inf). */
public final class AdaptiveMaxPool2d extends AdaptivePool2d {
    public AdaptiveMaxPool2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "AdaptiveMaxPool2d";
    }

    @Override
    float pool(float[] in, int base, int inW, int h0, int h1, int w0, int w1) {
        float best = Float.NEGATIVE_INFINITY;
        for (int iy = h0; iy < h1; iy++) {
            for (int ix = w0; ix < w1; ix++) {
                float v = in[base + iy * inW + ix];
                if (v > best) {
                    best = v;
                }
            }
        }
        return best;
    }
}
