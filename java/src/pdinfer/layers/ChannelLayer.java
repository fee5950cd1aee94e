package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Shared checks of the channel layers (Concat, Slice, ChannelShuffle): dim 1, rank >= 2. */
abstract class ChannelLayer extends Layer {
    protected ChannelLayer(String name, List<String> inputs) {
        super(name, inputs);
    }

    protected void checkDim(Map<String, Object> params) {
        Object dim = params.get("dim");
        if (!(dim instanceof Long) || (Long) dim != 1) {
            throw error("param 'dim' must be 1 (the channel dimension), got " + dim);
        }
    }

    protected void expectChannels(int[] shape, String what) {
        if (shape.length < 2) {
            throw error(what + " must have at least 2 dimensions (N, C, ...), got shape " + Tensor.shapeString(shape));
        }
    }

    /** The values per channel of one image: the product of the dimensions after dim 1. */
    protected static int plane(int[] shape) {
        int p = 1;
        for (int d = 2; d < shape.length; d++) {
            p *= shape[d];
        }
        return p;
    }
}
