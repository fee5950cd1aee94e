package pdinfer.layers;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import pdinfer.FormatException;
import pdinfer.Tensor;
import pdinfer.UnsupportedLayerException;

/**
 * One layer of the graph, ncnn style, mirroring pdinfer/layers/base.py: `loadParam` checks and
 * keeps the parameters, `loadModel` takes the weights, `forward` runs the reference kernel of
 * docs/KERNELS.md (NCHW float32, fixed summation order, no FMA). `outputShape` checks inputs.
 */
public abstract class Layer {
    /** The largest value accepted for any kernel size, stride, dilation or padding entry. */
    public static final int MAX_WINDOW = 4096;

    public final String name;
    public final List<String> inputs;

    protected Layer(String name, List<String> inputs) {
        this.name = name;
        this.inputs = List.copyOf(inputs);
    }

    /** The FORMAT.md type name. */
    public abstract String type();

    /** The parameter names, all required, no others. */
    public List<String> paramNames() {
        return List.of();
    }

    public int numInputs() {
        return 1;
    }

    /** True if the layer takes numInputs() or more inputs. */
    public boolean variadic() {
        return false;
    }

    // -- read parameters ---------------------------------------------------------------------

    /** Check and keep the parameters; subclasses call this first, then read theirs. */
    public void loadParam(Map<String, Object> params) {
        List<String> missing = new ArrayList<>();
        List<String> extra = new ArrayList<>();
        for (String p : paramNames()) {
            if (!params.containsKey(p)) {
                missing.add(p);
            }
        }
        for (String p : params.keySet()) {
            if (!paramNames().contains(p)) {
                extra.add(p);
            }
        }
        if (!missing.isEmpty() || !extra.isEmpty()) {
            throw error("params must be exactly " + paramNames()
                    + (missing.isEmpty() ? "" : "; missing " + missing)
                    + (extra.isEmpty() ? "" : "; unknown " + extra));
        }
    }

    /** The tensors this layer takes, role -> expected shape (known once params are read). */
    public Map<String, int[]> tensorShapes() {
        return Map.of();
    }

    // -- take weights ------------------------------------------------------------------------

    /** Keep the tensors (already checked against tensorShapes by the graph loader). */
    public void loadModel(Map<String, Tensor> tensors) {
    }

    // -- forward -----------------------------------------------------------------------------

    /** The output shape for these input shapes, or a FormatException if they don't fit. */
    public int[] outputShape(List<int[]> inShapes) {
        return inShapes.get(0);
    }

    /** The reference forward pass. Inputs have the shapes outputShape accepted. */
    public abstract Tensor forward(Tensor... xs);

    // -- helpers -----------------------------------------------------------------------------

    public FormatException error(String message) {
        return new FormatException("layer '" + name + "' (" + type() + "): " + message);
    }

    public UnsupportedLayerException unsupported(String message) {
        return new UnsupportedLayerException("layer '" + name + "' (" + type() + "): " + message);
    }

    protected int intParam(Map<String, Object> params, String key, int low, int high) {
        Object value = params.get(key);
        if (!(value instanceof Long) || (Long) value < low || (Long) value > high) {
            throw error("param '" + key + "' must be an integer in [" + low + ", " + high + "], got " + value);
        }
        return (int) (long) (Long) value;
    }

    protected int intParam(Map<String, Object> params, String key) {
        return intParam(params, key, 1, 1 << 24);
    }

    protected int[] pairParam(Map<String, Object> params, String key) {
        Object value = params.get(key);
        if (!(value instanceof List) || ((List<?>) value).size() != 2 || !((List<?>) value).stream()
                .allMatch(v -> v instanceof Long && (Long) v >= 1 && (Long) v <= MAX_WINDOW)) {
            throw error("param '" + key + "' must be [height, width] integers in [1, " + MAX_WINDOW
                    + "], got " + value);
        }
        return ((List<?>) value).stream().mapToInt(v -> (int) (long) (Long) v).toArray();
    }

    /** [top, left, bottom, right]. */
    protected int[] paddingParam(Map<String, Object> params) {
        Object value = params.get("padding");
        if (!(value instanceof List) || ((List<?>) value).size() != 4 || !((List<?>) value).stream()
                .allMatch(v -> v instanceof Long && (Long) v >= 0 && (Long) v <= MAX_WINDOW)) {
            throw error("param 'padding' must be [top, left, bottom, right] integers in [0, " + MAX_WINDOW
                    + "], got " + value);
        }
        return ((List<?>) value).stream().mapToInt(v -> (int) (long) (Long) v).toArray();
    }

    protected boolean boolParam(Map<String, Object> params, String key) {
        Object value = params.get(key);
        if (!(value instanceof Boolean)) {
            throw error("param '" + key + "' must be true or false, got " + value);
        }
        return (Boolean) value;
    }

    /** A number (integer or not, never a boolean) in [low, high], or (low, high] if lowOpen. */
    protected double floatParam(Map<String, Object> params, String key, double low, double high, boolean lowOpen) {
        Object value = params.get(key);
        double v;
        if (value instanceof Long) {
            v = (Long) value;
        } else if (value instanceof BigInteger) {
            v = ((BigInteger) value).doubleValue();
        } else if (value instanceof Double) {
            v = (Double) value;
        } else {
            v = Double.NaN;
        }
        if (!(low <= v && v <= high) || (lowOpen && v == low)) {
            throw error("param '" + key + "' must be a number in " + (lowOpen ? "(" : "[") + low + ", " + high
                    + "], got " + value);
        }
        return v;
    }

    protected double floatParam(Map<String, Object> params, String key) {
        return floatParam(params, key, -1e30, 1e30, false);
    }

    protected void expectRank(int[] shape, int rank) {
        if (shape.length != rank) {
            throw error("input must have " + rank + " dimensions, got shape " + Tensor.shapeString(shape));
        }
    }

    /** PyTorch's output length of a sliding window along one axis (conv and pooling). */
    public static int windowOutputSize(int size, int begin, int end, int kernel, int stride, int dilation,
                                       boolean ceilMode) {
        long span = (long) size + begin + end - (long) dilation * (kernel - 1) - 1;
        long out = Math.floorDiv(span + (ceilMode ? stride - 1 : 0), stride) + 1; // floor, as PyTorch's
        if (ceilMode && (out - 1) * stride >= (long) size + begin) {
            out -= 1;
        }
        return (int) Math.max(out, 0);
    }
}
