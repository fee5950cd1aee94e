package pdinfer;

/**
 * How far one tensor is from another: the largest absolute difference, the largest distance in
 * ulps, and how many values are not bit for bit equal. A running maximum over many comparisons.
 *
 * The ulp distance counts the float32 bit patterns between two values in their numeric order,
 * with -0 and +0 one apart, so it is 0 exactly when the raw bits are equal; NaN against any
 * other bit pattern is Long.MAX_VALUE.
 */
public final class Diff {
    public double maxAbs;
    public long maxUlp;
    public long mismatches; // values whose raw bits differ

    /** Fold the comparison of actual with expected (same shape) into this running result. */
    public void add(float[] actual, float[] expected) {
        for (int i = 0; i < actual.length; i++) {
            long ulps = ulpDistance(actual[i], expected[i]);
            if (ulps != 0) {
                mismatches++;
                maxUlp = Math.max(maxUlp, ulps);
                double abs = Math.abs((double) actual[i] - (double) expected[i]);
                maxAbs = Math.max(maxAbs, Double.isNaN(abs) ? Double.POSITIVE_INFINITY : abs);
            }
        }
    }

    /** Fold another running result into this one. */
    public void merge(Diff other) {
        maxAbs = Math.max(maxAbs, other.maxAbs);
        maxUlp = Math.max(maxUlp, other.maxUlp);
        mismatches += other.mismatches;
    }

    public static long ulpDistance(float a, float b) {
        int bitsA = Float.floatToRawIntBits(a);
        int bitsB = Float.floatToRawIntBits(b);
        if (bitsA == bitsB) {
            return 0;
        }
        if (Float.isNaN(a) || Float.isNaN(b)) {
            return Long.MAX_VALUE;
        }
        return Math.abs(ordered(bitsA) - ordered(bitsB));
    }

    /** Float bit patterns mapped to consecutive integers in numeric order (-0 is -1, +0 is 0). */
    private static long ordered(int bits) {
        return bits >= 0 ? bits : -(long) (bits & 0x7fffffff) - 1;
    }

    /** max |actual - expected| (infinite if either holds a NaN where the other does not match). */
    public static double maxAbsDiff(float[] actual, float[] expected) {
        double max = 0;
        for (int i = 0; i < actual.length; i++) {
            double abs = Math.abs((double) actual[i] - (double) expected[i]);
            max = Math.max(max, Double.isNaN(abs) ? Double.POSITIVE_INFINITY : abs);
        }
        return max;
    }

    public static double maxAbs(float[] values) {
        double max = 0;
        for (float v : values) {
            max = Math.max(max, Math.abs((double) v));
        }
        return max;
    }
}
