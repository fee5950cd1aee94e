package pdinfer.int8;

import java.util.List;

import pdinfer.Tensor;
import pdinfer.layers.Conv2d;
import pdinfer.layers.Layer;
import pdinfer.layers.MaxPool2d;
import pdinfer.layers.Window;

/**
 * One step of the int8 computation (pdinfer/quantize.py's Int8Step): `kind` on the values
 * `inputs`, writing the value `output`. The constants are computed once by Int8Graph.
 */
public final class Int8Step {
    /** CONV: a Conv2d or Linear with its fused activation; MAX_POOL, PASS (Flatten), MEAN
     *  (GlobalAvgPool) and ADD: uint8 in, uint8 out; FLOAT: a layer's float32 kernel. */
    public enum Kind { CONV, MAX_POOL, PASS, MEAN, ADD, FLOAT }

    private static final Window POINT = new Window(1, 1, 1, 1, 0, 0, 0, 0, 1, 1); // a Linear: a 1x1 convolution

    public final Kind kind;
    public final Layer layer; // the first file layer it covers
    public final Layer activation; // CONV: the fused ReLU, ReLU6 or LeakyReLU, or null
    public final List<String> inputs;
    public final String output;
    public final Quantization out; // the uint8 output's quantization; null: a float32 output
    private final Requant requant;
    private final Int8Weight weight; // CONV
    private final int[] bias; // CONV: int32 per output channel
    private final float[] multipliers; // CONV: per output channel; MEAN: {m}; ADD: {m_a, m_b}

    Int8Step(Kind kind, Layer layer, Layer activation, List<String> inputs, String output, Quantization out,
             Requant requant, Int8Weight weight, int[] bias, float[] multipliers) {
        this.kind = kind;
        this.layer = layer;
        this.activation = activation;
        this.inputs = List.copyOf(inputs);
        this.output = output;
        this.out = out;
        this.requant = requant;
        this.weight = weight;
        this.bias = bias;
        this.multipliers = multipliers;
    }

    /** The layer types it covers, e.g. "Conv2d+LeakyReLU". */
    public String type() {
        return layer.type() + (activation != null ? "+" + activation.type() : "");
    }

    /** Read the inputs from `values` and put the output there. */
    void run(Values values) {
        switch (kind) {
            case CONV -> values.put(output, convolve(values.uint8(inputs.get(0))));
            case MAX_POOL -> {
                QTensor x = values.uint8(inputs.get(0));
                int[] shape = layer.outputShape(List.of(x.shape));
                values.put(output, Int8Kernels.maxPool2d(x, ((MaxPool2d) layer).window(), shape[2], shape[3]));
            }
            case PASS -> {
                QTensor x = values.uint8(inputs.get(0));
                values.put(output, x.reshape(layer.outputShape(List.of(x.shape))));
            }
            case MEAN -> {
                QTensor x = values.uint8(inputs.get(0));
                values.put(output, Int8Kernels.globalAvgPool(x, multipliers[0], requant, out,
                        layer.outputShape(List.of(x.shape))));
            }
            case ADD -> values.put(output, Int8Kernels.add(values.uint8(inputs.get(0)), multipliers[0],
                    values.uint8(inputs.get(1)), multipliers[1], requant, out));
            case FLOAT -> values.put(output, layer.forward(inputs.stream().map(values::float32).toArray(Tensor[]::new)));
        }
    }

    private QTensor convolve(QTensor x) {
        int[] shape = layer.outputShape(List.of(x.shape));
        if (layer instanceof Conv2d conv) {
            return Int8Kernels.conv2d(x, weight.levels(), shape[1], conv.groups(), conv.window(), bias, multipliers,
                    requant, out, shape[2], shape[3]);
        }
        QTensor image = x.reshape(x.shape[0], x.shape[1], 1, 1); // a Linear: (N, I) as 1x1 images
        return Int8Kernels.conv2d(image, weight.levels(), shape[1], 1, POINT, bias, multipliers, requant, out, 1, 1)
                .reshape(shape);
    }
}
