package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/**
 * Softmax along dim 1 of (N, C, ...): per (n, position) row of C values, m = the float32 max
 * (first wins), e_j = exp(double(x_j) - double(m)), s = sum of e_j in double, j ascending,
 * y_j = float32(e_j / s).
 */
public final class Softmax extends Layer {
    public Softmax(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Softmax";
    }

    @Override
    public List<String> paramNames() {
        return List.of("dim");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        Object dim = params.get("dim");
        if (!Long.valueOf(1).equals(dim)) {
            throw unsupported("only dim=1 (an integer) is supported, got dim=" + dim);
        }
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        if (inShapes.get(0).length < 2) {
            throw error("input must have at least 2 dimensions, got shape " + Tensor.shapeString(inShapes.get(0)));
        }
        return inShapes.get(0);
    }

    @Override
    public Tensor forward(Tensor... xs) {
        Tensor x = xs[0];
        int batch = x.shape[0];
        int channels = x.shape[1];
        int positions = (int) (Tensor.size(x.shape) / ((long) batch * channels)); // product of dims after 1
        float[] in = x.data;
        float[] out = new float[in.length];
        double[] exps = new double[channels];
        for (int n = 0; n < batch; n++) {
            for (int p = 0; p < positions; p++) {
                int base = n * channels * positions + p; // value j is at base + j * positions
                float m = in[base];
                for (int j = 1; j < channels; j++) {
                    if (in[base + j * positions] > m) {
                        m = in[base + j * positions];
                    }
                }
                double total = 0.0;
                for (int j = 0; j < channels; j++) {
                    exps[j] = StrictMath.exp((double) in[base + j * positions] - (double) m);
                    total += exps[j];
                }
                for (int j = 0; j < channels; j++) {
                    out[base + j * positions] = (float) (exps[j] / total);
                }
            }
        }
        return new Tensor(x.shape, out);
    }
}
