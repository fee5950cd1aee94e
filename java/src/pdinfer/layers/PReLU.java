package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/**
 * y = x if x > 0 else weight[c] * x (one float32 multiply): one weight for every value, or one per
 * channel (dim 1). Any shape of rank >= 2 with the matching channel count.
 */
public final class PReLU extends Layer {
    private int numParameters;
    private float[] weight; // (numParameters,)

    public PReLU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "PReLU";
    }

    @Override
    public List<String> paramNames() {
        return List.of("num_parameters");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        numParameters = intParam(params, "num_parameters");
    }

    @Override
    public Map<String, int[]> tensorShapes() {
        return Map.of("weight", new int[] {numParameters});
    }

    @Override
    public void loadModel(Map<String, Tensor> tensors) {
        weight = tensors.get("weight").data;
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        if (numParameters > 1 && (shape.length < 2 || shape[1] != numParameters)) {
            throw error(numParameters + " weights need an input with " + numParameters
                    + " channels (dim 1), got shape " + Tensor.shapeString(shape));
        }
        return shape;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, ...): P values per (n, c)
        int planes = x.shape[0] * x.shape[1];
        int positions = (int) (Tensor.size(x.shape) / planes);
        float[] in = x.data;
        float[] out = new float[in.length];
        for (int plane = 0; plane < planes; plane++) {
            float w = weight[numParameters > 1 ? plane % x.shape[1] : 0];
            for (int i = plane * positions; i < (plane + 1) * positions; i++) {
                float v = in[i];
                out[i] = v > 0 ? v : w * v;
            }
        }
        return new Tensor(x.shape, out);
    }
}
