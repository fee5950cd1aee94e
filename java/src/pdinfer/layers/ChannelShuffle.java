package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** y[n, k * groups + g, ...] = x[n, g * (C / groups) + k, ...]: ShuffleNet's channel shuffle. */
public final class ChannelShuffle extends ChannelLayer {
    private int groups;

    public ChannelShuffle(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "ChannelShuffle";
    }

    @Override
    public List<String> paramNames() {
        return List.of("groups");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        groups = intParam(params, "groups");
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectChannels(shape, "input");
        if (shape[1] % groups != 0) {
            throw error("groups=" + groups + " does not divide the " + shape[1] + " input channels");
        }
        return shape;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, ...)
        int channels = x.shape[1];
        int perGroup = channels / groups;
        int plane = plane(x.shape);
        float[] out = new float[x.data.length];
        for (int n = 0; n < x.shape[0]; n++) {
            for (int k = 0; k < perGroup; k++) {
                for (int g = 0; g < groups; g++) {
                    for (int p = 0; p < plane; p++) {
                        out[(n * channels + k * groups + g) * plane + p] = x.data[(n * channels + g * perGroup + k) * plane + p];
                    }
                }
            }
        }
        return new Tensor(x.shape, out);
    }
}
