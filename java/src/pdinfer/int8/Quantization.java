package pdinfer.int8;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import pdinfer.Container;
import pdinfer.FormatException;
import pdinfer.Json;

/**
 * How a uint8 value stands for a real one: real = scale * (q - zeroPoint) (pdinfer/quantize.py's
 * Quantization), and the file's `activations` entry of them (docs/FORMAT.md, section 1.3).
 */
public record Quantization(float scale, int zeroPoint) {
    /** The metadata key of an int8-computing file. */
    public static final String KEY = "activations";
    public static final int LEVELS = 255; // uint8 levels 0..255

    /**
     * The checked `activations` entry (quantize.decode): a JSON object naming only `values` (the
     * input and the layers), each [scale, zero_point] with a scale that is a positive, finite
     * float32 number (the JSON number must be exactly that float32) and a zero point in [0, 255].
     */
    public static Map<String, Quantization> decode(String text, Set<String> values, String where) {
        Object entry = Json.parse(text, "metadata '" + KEY + "'", where);
        if (!(entry instanceof Map)) {
            throw new FormatException(where + ": metadata '" + KEY + "' must be a JSON object");
        }
        Map<String, Quantization> out = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : Container.asMap(entry).entrySet()) {
            if (!values.contains(e.getKey())) {
                throw new FormatException(where + ": metadata '" + KEY + "' names '" + e.getKey()
                        + "', not the input or a layer");
            }
            Quantization q = pair(e.getValue());
            if (q == null) {
                throw new FormatException(where + ": metadata '" + KEY + "' of '" + e.getKey() + "' must be [scale, "
                        + "zero_point] with a positive finite float32 scale and a zero point in [0, " + LEVELS
                        + "], got " + e.getValue());
            }
            out.put(e.getKey(), q);
        }
        return out;
    }

    /** [scale, zero_point] as a Quantization, or null if it is not a valid pair. */
    private static Quantization pair(Object value) {
        if (!(value instanceof List<?> pair) || pair.size() != 2
                || !(pair.get(1) instanceof Long zeroPoint) || zeroPoint < 0 || zeroPoint > LEVELS) {
            return null;
        }
        Object number = pair.get(0);
        float scale;
        boolean exact;
        if (number instanceof Double d) {
            scale = (float) (double) d;
            exact = scale == d;
        } else if (number instanceof Long || number instanceof BigInteger) {
            BigDecimal integer = new BigDecimal(number.toString());
            scale = integer.floatValue();
            exact = Float.isFinite(scale) && new BigDecimal(scale).compareTo(integer) == 0;
        } else {
            return null;
        }
        return exact && Float.isFinite(scale) && scale > 0 ? new Quantization(scale, (int) (long) zeroPoint) : null;
    }
}
