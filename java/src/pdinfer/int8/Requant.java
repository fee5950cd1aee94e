package pdinfer.int8;

/**
 * How an int8 kernel writes a uint8 output from its float32 pre-image v (pdinfer/kernels/params.py's
 * Requant, kernels/integer.py's requantize): v * negativeSlope where v is negative (LeakyReLU; 1
 * otherwise), then zeroPoint + round_half_even(v), clamped to [low, high] (ReLU and ReLU6 are bounds).
 */
public record Requant(int zeroPoint, int low, int high, float negativeSlope) {
    /** No activation: the whole uint8 range. */
    static Requant whole(int zeroPoint) {
        return new Requant(zeroPoint, 0, Quantization.LEVELS, 1.0f);
    }

    /** The level written for v (docs/KERNELS.md, "Int8 computation"). */
    int apply(float v) {
        if (v < 0) {
            v = v * negativeSlope; // one float32 multiply
        }
        float r = (float) Math.rint(v); // half to even; exact: a float's nearest integer is a float
        float lowest = low - zeroPoint;
        float highest = high - zeroPoint;
        r = r < lowest ? lowest : (r > highest ? highest : r); // the clamp, on the float
        return (int) r + zeroPoint;
    }
}
