package pdinfer.layers;

import java.util.List;

import pdinfer.Tensor;

/**
 * y = a * b (one float32 multiply) with broadcasting: both (N, C) or both (N, C, H, W), the same
 * N, every other axis equal or 1 in one of them (a size-1 axis is repeated).
 */
public final class Mul extends Layer {
    public Mul(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Mul";
    }

    @Override
    public int numInputs() {
        return 2;
    }

    @Override
    public int[] outputShape(List<int[]> inShapes) {
        int[] a = inShapes.get(0);
        int[] b = inShapes.get(1);
        boolean ok = a.length == b.length && (a.length == 2 || a.length == 4) && a[0] == b[0];
        int[] out = a.clone();
        for (int d = 1; ok && d < a.length; d++) {
            ok = a[d] == b[d] || a[d] == 1 || b[d] == 1;
            out[d] = Math.max(a[d], b[d]);
        }
        if (!ok) {
            throw error("inputs of shapes " + Tensor.shapeString(a) + " and " + Tensor.shapeString(b) + " do not broadcast: "
                    + "both must be (N, C) or (N, C, H, W) with the same N, each other axis equal or 1 in one of them");
        }
        return out;
    }

    @Override
    public Tensor forward(Tensor... xs) {
        int[] shape = outputShape(List.of(xs[0].shape, xs[1].shape));
        int[] a = as4d(xs[0].shape); // (N, Ca, Ha, Wa)
        int[] b = as4d(xs[1].shape); // (N, Cb, Hb, Wb)
        int[] o = as4d(shape);
        float[] da = xs[0].data;
        float[] db = xs[1].data;
        float[] out = new float[Math.toIntExact(Tensor.size(shape))];
        int i = 0;
        for (int n = 0; n < o[0]; n++) {
            for (int c = 0; c < o[1]; c++) {
                int ac = a[1] > 1 ? c : 0;
                int bc = b[1] > 1 ? c : 0;
                for (int y = 0; y < o[2]; y++) {
                    int ay = a[2] > 1 ? y : 0;
                    int by = b[2] > 1 ? y : 0;
                    for (int x = 0; x < o[3]; x++) {
                        int ax = a[3] > 1 ? x : 0;
                        int bx = b[3] > 1 ? x : 0;
                        out[i++] = da[((n * a[1] + ac) * a[2] + ay) * a[3] + ax] * db[((n * b[1] + bc) * b[2] + by) * b[3] + bx];
                    }
                }
            }
        }
        return new Tensor(shape, out);
    }

    /** (N, C) as (N, C, 1, 1). */
    private static int[] as4d(int[] shape) {
        return shape.length == 4 ? shape : new int[] {shape[0], shape[1], 1, 1};
    }
}
