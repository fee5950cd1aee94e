package pdinfer.layers;

import java.util.List;

/** Max over the channels (c ascending; strictly larger wins, starting from -inf). */
public final class ChannelMax extends ChannelReduction {
    public ChannelMax(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ChannelMax";
    }

    @Override
    float reduce(float[] in, int base, int stride, int channels) {
        float best = Float.NEGATIVE_INFINITY;
        for (int c = 0; c < channels; c++) {
            float v = in[base + c * stride];
            if (v > best) {
                best = v;
            }
        }
        return best;
    }
}
