package pdinfer;

import java.util.List;
import java.util.Map;

/**
 * A file's computation as a golden bundle records it (docs/GOLDEN.md): named values in execution
 * order, each computed by one step from named values (or the input image), and stored in a bundle
 * as float32 tensors. {@link Graph} is the float32 one (a value per layer); pdinfer.int8.Int8Graph
 * the int8 one (a value per int8 or float step).
 */
public interface Traced {
    /** The manifest's name of this computation: "float32" or "int8". */
    String computation();

    /** The values a bundle may hold, in execution order (each a layer's name). */
    List<String> valueNames();

    /** The layer type(s) computing a value, as the runner's table shows them. */
    String type(String value);

    /** The values (or "input") a value is computed from. */
    List<String> inputs(String value);

    /** True if a bundle stores the value as uint8 levels (float32 numbers 0..255). */
    boolean storesLevels(String value);

    /** Every value for one image (1, C, H, W), as a bundle stores it. */
    Map<String, Tensor> trace(Tensor image);

    /** One value computed from its inputs as a bundle stores them (by name; "input": the image). */
    Tensor forward(String value, Map<String, Tensor> stored);
}
