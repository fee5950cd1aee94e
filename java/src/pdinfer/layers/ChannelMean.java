package pdinfer.layers;

import java.util.List;

/** Mean over the channels: float32 sum (c ascending) / float32(C). */
public final class ChannelMean extends ChannelReduction {
    public ChannelMean(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ChannelMean";
    }

    @Override
    float reduce(float[] in, int base, int stride, int channels) {
        float acc = 0.0f;
        for (int c = 0; c < channels; c++) {
            acc += in[base + c * stride];
        }
        return acc / (float) channels;
    }
}
