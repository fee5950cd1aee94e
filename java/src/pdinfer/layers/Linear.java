package pdinfer.layers;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Linear: y[n, o] = sum over i ascending of x[n, i] * weight[o, i], then + bias[o]. */
public final class Linear extends Layer {
    private int inFeatures;
    private int outFeatures;
    private boolean hasBias;
    private float[] weight; // (O, I)
    private float[] bias; // (O,), only if hasBias

    public Linear(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Linear";
    }

    @Override
    public List<String> paramNames() {
        return List.of("in_features", "out_features", "bias");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        inFeatures = intParam(params, "in_features", 1, 1 << 27);
        outFeatures = intParam(params, "out_features");
        hasBias = boolParam(params, "bias");
    }

    @Override
    public Map<String, int[]> tensorShapes() {
        Map<String, int[]> shapes = new LinkedHashMap<>();
        shapes.put("weight", new int[] {outFeatures, inFeatures});
        if (hasBias) {
            shapes.put("bias", new int[] {outFeatures});
        }
        return shapes;
    }

    @Override
    public void loadModel(Map<String, Tensor> tensors) {
        weight = tensors.get("weight").data;
        bias = hasBias ? tensors.get("bias").data : null;
    }

    /** The bias (O,), or null without one. */
    public float[] bias() {
        return hasBias ? bias.clone() : null;
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 2);
        if (shape[1] != inFeatures) {
            throw error("expects " + inFeatures + " input features, got shape " + Tensor.shapeString(shape));
        }
        return new int[] {shape[0], outFeatures};
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, I)
        int batch = x.shape[0];
        float[] in = x.data;
        float[] out = new float[batch * outFeatures];
        for (int n = 0; n < batch; n++) {
            for (int o = 0; o < outFeatures; o++) {
                float acc = 0.0f;
                for (int i = 0; i < inFeatures; i++) {
                    acc += in[n * inFeatures + i] * weight[o * inFeatures + i];
                }
                if (hasBias) {
                    acc += bias[o];
                }
                out[n * outFeatures + o] = acc;
            }
        }
        return new Tensor(new int[] {batch, outFeatures}, out);
    }
}
