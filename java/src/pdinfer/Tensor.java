package pdinfer;

import java.util.Arrays;

/** A float32 array in C order with its shape (NCHW for images: shape[0] is the batch N). */
public final class Tensor {
    public final int[] shape;
    public final float[] data;

    public Tensor(int[] shape, float[] data) {
        if (size(shape) != data.length) {
            throw new IllegalArgumentException("shape " + shapeString(shape) + " does not hold "
                    + data.length + " values");
        }
        this.shape = shape.clone();
        this.data = data;
    }

    /** A zero-filled tensor of this shape. */
    public static Tensor zeros(int... shape) {
        return new Tensor(shape, new float[Math.toIntExact(size(shape))]);
    }

    /** The same values under another shape of the same size (shares the data). */
    public Tensor reshape(int... newShape) {
        return new Tensor(newShape, data);
    }

    public int rank() {
        return shape.length;
    }

    public static long size(int[] shape) {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    public static String shapeString(int[] shape) {
        return Arrays.toString(shape).replace(" ", "");
    }

    @Override
    public String toString() {
        return "Tensor" + shapeString(shape);
    }
}
