package pdinfer.int8;

import java.util.HashMap;
import java.util.Map;

import pdinfer.Tensor;

/**
 * The values of one int8 run by name, each uint8 or float32, read in the form a step needs
 * (quantize.Int8Reference.trace's `read`): a float32 value read as uint8 is quantized with its
 * `activations` entry, a uint8 value read as float32 is dequantized.
 */
final class Values {
    private final Map<String, Quantization> activations;
    private final Map<String, QTensor> uint8 = new HashMap<>();
    private final Map<String, Tensor> float32 = new HashMap<>();

    Values(Map<String, Quantization> activations) {
        this.activations = activations;
    }

    void put(String name, QTensor value) {
        uint8.put(name, value);
    }

    void put(String name, Tensor value) {
        float32.put(name, value);
    }

    QTensor uint8(String name) {
        QTensor value = uint8.get(name);
        return value != null ? value : Int8Kernels.quantize(float32.get(name), activations.get(name));
    }

    Tensor float32(String name) {
        Tensor value = float32.get(name);
        return value != null ? value : Int8Kernels.dequantize(uint8.get(name));
    }
}
