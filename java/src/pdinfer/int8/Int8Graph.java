package pdinfer.int8;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import pdinfer.FormatException;
import pdinfer.Graph;
import pdinfer.PdinferException;
import pdinfer.Tensor;
import pdinfer.Traced;
import pdinfer.UnsupportedLayerException;
import pdinfer.layers.Add;
import pdinfer.layers.Conv2d;
import pdinfer.layers.Dropout;
import pdinfer.layers.Flatten;
import pdinfer.layers.GlobalAvgPool;
import pdinfer.layers.Layer;
import pdinfer.layers.LeakyReLU;
import pdinfer.layers.Linear;
import pdinfer.layers.MaxPool2d;
import pdinfer.layers.ReLU;
import pdinfer.layers.ReLU6;

/**
 * The int8 computation of a file with an `activations` entry (docs/KERNELS.md, "Int8
 * computation"; pdinfer/quantize.py's int8_steps and Int8Reference): its steps in file order with
 * their constants, and the runner. A Linear, or a Conv2d of one group or depthwise, with an I8
 * weight computes in int8, with the ReLU, ReLU6 or LeakyReLU that alone reads it (through
 * Dropout) fused; MaxPool2d and Flatten pass
 * uint8 values on; GlobalAvgPool and Add of uint8 values requantize; every other layer runs its
 * float32 kernel on dequantized inputs. The model's output is dequantized.
 */
public final class Int8Graph implements Traced {
    public static final String COMPUTATION = "int8";
    /** |bias| + taps * 255 * 127 of an int8 convolution stays below this: its int32 sum cannot overflow. */
    private static final long INT32_SUM_LIMIT = 1L << 31;

    public final List<Int8Step> steps;
    public final Map<String, Quantization> activations;
    private final Map<String, Int8Step> byOutput = new HashMap<>();
    private final int[] inputShape; // (1, C, H, W)
    private final String output; // the last step's output: the model's, dequantized

    private Int8Graph(List<Int8Step> steps, Map<String, Quantization> activations, int[] inputShape) {
        this.steps = List.copyOf(steps);
        this.activations = Map.copyOf(activations);
        this.inputShape = inputShape;
        this.output = steps.get(steps.size() - 1).output;
        for (Int8Step step : steps) {
            byOutput.put(step.output, step);
        }
    }

    /**
     * The steps of checked layers (shapes: by layer name and "input", N = 1; weights: the I8
     * weights by layer name). A FormatException if `activations` lacks a value an int8 step reads
     * or writes, an UnsupportedLayerException if a convolution's int32 sum could overflow.
     */
    public static Int8Graph build(List<Layer> layers, Map<String, int[]> shapes, Map<String, Int8Weight> weights,
                                  Map<String, Quantization> activations, String where) {
        Readers readers = new Readers(layers);
        Map<String, Quantization> quantized = new HashMap<>(); // uint8 values so far
        Map<String, String> value = new HashMap<>(Map.of(Graph.INPUT, Graph.INPUT)); // layer -> its value
        List<Int8Step> steps = new ArrayList<>();
        for (Layer layer : layers) {
            if (value.containsKey(layer.name)) {
                continue; // a fused activation
            }
            List<String> inputs = layer.inputs.stream().map(value::get).toList();
            String in = inputs.get(0);
            if (layer instanceof Dropout) { // the identity: no step
                value.put(layer.name, in);
                continue;
            }
            Int8Step step;
            if (weights.containsKey(layer.name) && oneGroupOrDepthwise(layer)) { // an I8 weight
                Layer act = readers.soleActivation(layer.name);
                String output = act != null ? act.name : layer.name;
                Quantization x = quantized.containsKey(in) ? quantized.get(in) : entry(activations, in, where);
                step = convStep(layer, act, inputs, output, weights.get(layer.name), x,
                        entry(activations, output, where), where);
                if (act != null) {
                    value.put(act.name, output);
                }
            } else if ((layer instanceof MaxPool2d || layer instanceof Flatten) && quantized.containsKey(in)) {
                step = new Int8Step(layer instanceof MaxPool2d ? Int8Step.Kind.MAX_POOL : Int8Step.Kind.PASS, layer,
                        null, inputs, layer.name, quantized.get(in), null, null, null, null);
            } else if (layer instanceof GlobalAvgPool && quantized.containsKey(in)) {
                Quantization x = quantized.get(in);
                Quantization out = entry(activations, layer.name, where);
                int[] shape = shapes.get(in);
                float[] multiplier = {ratio(x.scale(), (double) out.scale() * shape[2] * shape[3])};
                step = new Int8Step(Int8Step.Kind.MEAN, layer, null, inputs, layer.name, out,
                        Requant.whole(out.zeroPoint()), null, null, finite(multiplier, layer, where));
            } else if (layer instanceof Add && quantized.keySet().containsAll(inputs)) {
                Quantization out = entry(activations, layer.name, where);
                float[] multipliers = {ratio(quantized.get(in).scale(), out.scale()),
                    ratio(quantized.get(inputs.get(1)).scale(), out.scale())};
                step = new Int8Step(Int8Step.Kind.ADD, layer, null, inputs, layer.name, out,
                        Requant.whole(out.zeroPoint()), null, null, finite(multipliers, layer, where));
            } else {
                step = new Int8Step(Int8Step.Kind.FLOAT, layer, null, inputs, layer.name, null, null, null, null, null);
            }
            value.put(layer.name, step.output);
            if (step.out != null) {
                quantized.put(step.output, step.out);
            }
            steps.add(step);
        }
        return new Int8Graph(steps, activations, shapes.get(Graph.INPUT));
    }

    /** A Linear, or a Conv2d of one group or depthwise (the convolutions with int8 kernels). */
    private static boolean oneGroupOrDepthwise(Layer layer) {
        return !(layer instanceof Conv2d conv) || conv.groups() == 1 || conv.isDepthwise();
    }

    private static Quantization entry(Map<String, Quantization> activations, String name, String where) {
        Quantization q = activations.get(name);
        if (q == null) {
            throw new FormatException(where + ": metadata '" + Quantization.KEY + "' lacks the quantization of value '"
                    + name + "', which an int8 layer reads or writes");
        }
        return q;
    }

    /**
     * An int8 convolution's step (quantize.conv_constants, output_requant), per output channel o,
     * in binary64: bias_q[o] = rint(bias[o] / (x.scale * weight_scale[o])) (0 without a bias),
     * multiplier[o] = float32(x.scale * weight_scale[o] / out.scale).
     */
    private static Int8Step convStep(Layer layer, Layer act, List<String> inputs, String output, Int8Weight weight,
                                     Quantization x, Quantization out, String where) {
        float[] bias = layer instanceof Conv2d conv ? conv.bias() : ((Linear) layer).bias();
        float[] scale = weight.scale();
        int[] biasQ = new int[scale.length];
        float[] multiplier = new float[scale.length];
        long largest = 0;
        for (int o = 0; o < scale.length; o++) {
            double unit = (double) x.scale() * (double) scale[o];
            double b = bias == null ? 0 : Math.rint((double) bias[o] / unit);
            long clipped = (long) Math.max(-INT32_SUM_LIMIT, Math.min(INT32_SUM_LIMIT, b));
            largest = Math.max(largest, Math.abs(clipped));
            biasQ[o] = (int) clipped; // in range unless refused below
            multiplier[o] = (float) (unit / (double) out.scale());
        }
        long taps = weight.levels().length / scale.length;
        if (largest + taps * Quantization.LEVELS * 127 >= INT32_SUM_LIMIT) {
            throw new UnsupportedLayerException(where + ": layer '" + layer.name + "': its int8 sum could overflow "
                    + "int32 (" + taps + " taps, bias up to " + largest + " in units of its scales)");
        }
        return new Int8Step(Int8Step.Kind.CONV, layer, act, inputs, output, out, outputRequant(act, out), weight, biasQ,
                finite(multiplier, layer, where));
    }

    /** The multipliers, if they are finite float32 numbers (quantize._checked). */
    private static float[] finite(float[] multipliers, Layer layer, String where) {
        for (float m : multipliers) {
            if (!Float.isFinite(m)) {
                throw new UnsupportedLayerException(where + ": layer '" + layer.name + "': a multiplier of its int8 "
                        + "requantization is beyond float32 (the scales of its input and output are too far apart)");
            }
        }
        return multipliers;
    }

    /** The bounds and slope of a convolution writing `out` with `act` fused (quantize.output_requant). */
    private static Requant outputRequant(Layer act, Quantization out) {
        int z = out.zeroPoint();
        if (act instanceof ReLU) {
            return new Requant(z, z, Quantization.LEVELS, 1.0f);
        }
        if (act instanceof ReLU6) { // 6 / scale: one float32 division
            int high = (int) Math.min(Quantization.LEVELS, z + Math.rint(6.0f / out.scale()));
            return new Requant(z, z, high, 1.0f);
        }
        if (act instanceof LeakyReLU leaky) {
            return new Requant(z, 0, Quantization.LEVELS, leaky.negativeSlope());
        }
        return Requant.whole(z);
    }

    /** float32(numerator / denominator), in binary64: the multiplier of a mean or an Add operand. */
    private static float ratio(float numerator, double denominator) {
        return (float) ((double) numerator / denominator);
    }

    /** Who reads each value, looking through Dropout layers (pdinfer/fusion.py's Readers). */
    private static final class Readers {
        private final Map<String, Layer> byName = new HashMap<>();
        private final Map<String, List<Layer>> readers = new HashMap<>();

        Readers(List<Layer> layers) {
            for (Layer layer : layers) {
                byName.put(layer.name, layer);
            }
            for (Layer layer : layers) {
                if (!(layer instanceof Dropout)) {
                    for (String name : layer.inputs) {
                        readers.computeIfAbsent(source(name), k -> new ArrayList<>()).add(layer);
                    }
                }
            }
        }

        private String source(String name) {
            while (byName.get(name) instanceof Dropout dropout) {
                name = dropout.inputs.get(0);
            }
            return name;
        }

        /** The one layer reading `name`, if there is exactly one and it is a ReLU, ReLU6 or LeakyReLU. */
        Layer soleActivation(String name) {
            List<Layer> users = readers.getOrDefault(name, List.of());
            Layer user = users.size() == 1 ? users.get(0) : null;
            return user instanceof ReLU || user instanceof ReLU6 || user instanceof LeakyReLU ? user : null;
        }
    }

    // -- running -----------------------------------------------------------------------------

    /** The model's output for one image (1, C, H, W): float32, the last value dequantized. */
    public Tensor run(Tensor image) {
        return run(image, new Values(activations)).float32(output);
    }

    private Values run(Tensor image, Values values) {
        if (!Arrays.equals(image.shape, inputShape)) {
            throw new PdinferException("input shape must be " + Tensor.shapeString(inputShape) + ", got "
                    + Tensor.shapeString(image.shape));
        }
        values.put(Graph.INPUT, image);
        for (Int8Step step : steps) {
            step.run(values);
        }
        return values;
    }

    /** The value as a bundle stores it: uint8 as float32 levels, the output dequantized, float32 as it is. */
    private Tensor stored(Values values, String value) {
        return storesLevels(value) ? values.uint8(value).levelsAsFloats() : values.float32(value);
    }

    @Override
    public String computation() {
        return COMPUTATION;
    }

    @Override
    public List<String> valueNames() {
        return steps.stream().map(step -> step.output).toList();
    }

    @Override
    public String type(String value) {
        return byOutput.get(value).type();
    }

    @Override
    public List<String> inputs(String value) {
        return byOutput.get(value).inputs;
    }

    @Override
    public boolean storesLevels(String value) {
        return byOutput.get(value).out != null && !value.equals(output);
    }

    @Override
    public Map<String, Tensor> trace(Tensor image) {
        Values values = run(image, new Values(activations));
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Int8Step step : steps) {
            out.put(step.output, stored(values, step.output));
        }
        return out;
    }

    @Override
    public Tensor forward(String value, Map<String, Tensor> stored) {
        Int8Step step = byOutput.get(value);
        Values values = new Values(activations);
        for (String in : step.inputs) {
            if (!in.equals(Graph.INPUT) && storesLevels(in)) {
                values.put(in, QTensor.ofLevels(stored.get(in), byOutput.get(in).out));
            } else {
                values.put(in, stored.get(in));
            }
        }
        step.run(values);
        return stored(values, value);
    }
}
