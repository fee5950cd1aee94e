package pdinfer.layers;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** BatchNorm2d in eval mode, unfolded: y = (x - mean) * (weight / sqrt(var + eps)) + bias. */
public final class BatchNorm2d extends Layer {
    private int numFeatures;
    private float eps; // float32(eps), as the reference passes it
    private float[] weight; // (C,)
    private float[] bias; // (C,)
    private float[] runningMean; // (C,)
    private float[] runningVar; // (C,)

    public BatchNorm2d(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "BatchNorm2d";
    }

    @Override
    public List<String> paramNames() {
        return List.of("num_features", "eps");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        numFeatures = intParam(params, "num_features");
        eps = (float) floatParam(params, "eps", 0.0, 1.0, true);
    }

    @Override
    public Map<String, int[]> tensorShapes() {
        Map<String, int[]> shapes = new LinkedHashMap<>();
        for (String role : List.of("weight", "bias", "running_mean", "running_var")) {
            shapes.put(role, new int[] {numFeatures});
        }
        return shapes;
    }

    @Override
    public void loadModel(Map<String, Tensor> tensors) {
        weight = tensors.get("weight").data;
        bias = tensors.get("bias").data;
        runningMean = tensors.get("running_mean").data;
        runningVar = tensors.get("running_var").data;
        for (float v : runningVar) {
            if (!(v >= 0)) {
                throw error("running_var has negative or NaN entries");
            }
        }
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] shape = inShapes.get(0);
        expectRank(shape, 4);
        if (shape[1] != numFeatures) {
            throw error("expects " + numFeatures + " channels, got shape " + Tensor.shapeString(shape));
        }
        return shape;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0]; // (N, C, H, W)
        int batch = x.shape[0];
        int plane = x.shape[2] * x.shape[3];
        float[] in = x.data;
        float[] out = new float[in.length];
        for (int c = 0; c < numFeatures; c++) {
            // float32 sum, correctly rounded float32 square root (a double sqrt rounded to float
            // is the correctly rounded float sqrt), float32 quotient.
            float scale = weight[c] / (float) Math.sqrt(runningVar[c] + eps);
            for (int n = 0; n < batch; n++) {
                int base = (n * numFeatures + c) * plane;
                for (int i = base; i < base + plane; i++) {
                    out[i] = (in[i] - runningMean[c]) * scale + bias[c];
                }
            }
        }
        return new Tensor(x.shape, out);
    }
}
