package pdinfer.int8;

import pdinfer.Tensor;

/**
 * A uint8 tensor in C order with its shape and quantization: level q stands for
 * scale * (q - zeroPoint).
 */
public final class QTensor {
    public final int[] shape;
    public final byte[] data; // the levels 0..255, read with level(i)
    public final Quantization quantization;

    public QTensor(int[] shape, byte[] data, Quantization quantization) {
        if (Tensor.size(shape) != data.length) {
            throw new IllegalArgumentException("shape " + Tensor.shapeString(shape) + " does not hold "
                    + data.length + " values");
        }
        this.shape = shape.clone();
        this.data = data;
        this.quantization = quantization;
    }

    public int level(int i) {
        return data[i] & 0xFF;
    }

    /** The same levels under another shape of the same size (shares the data). */
    public QTensor reshape(int... newShape) {
        return new QTensor(newShape, data, quantization);
    }

    /** The levels as float32 numbers 0..255 (how golden bundles store a uint8 value). */
    public Tensor levelsAsFloats() {
        float[] out = new float[data.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = level(i);
        }
        return new Tensor(shape, out);
    }

    /** True if every value is a uint8 level: an integer in [0, 255]. */
    public static boolean holdsLevels(Tensor values) {
        for (float v : values.data) {
            if (!(v >= 0 && v <= Quantization.LEVELS && v == Math.rint(v))) {
                return false;
            }
        }
        return true;
    }

    /** Levels stored as float32 numbers (see holdsLevels) with their quantization. */
    public static QTensor ofLevels(Tensor levels, Quantization quantization) {
        byte[] out = new byte[levels.data.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) levels.data[i];
        }
        return new QTensor(levels.shape, out, quantization);
    }
}
