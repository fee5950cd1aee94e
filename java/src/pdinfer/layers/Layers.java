package pdinfer.layers;

import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.BiFunction;

/** The layer registry: every type a weight file may name, by its FORMAT.md name. */
public final class Layers {
    private static final Map<String, BiFunction<String, List<String>, Layer>> TYPES = Map.ofEntries(
            Map.entry("Conv2d", Conv2d::new),
            Map.entry("BatchNorm2d", BatchNorm2d::new),
            Map.entry("Linear", Linear::new),
            Map.entry("ReLU", ReLU::new),
            Map.entry("ReLU6", ReLU6::new),
            Map.entry("LeakyReLU", LeakyReLU::new),
            Map.entry("Sigmoid", Sigmoid::new),
            Map.entry("Softmax", Softmax::new),
            Map.entry("MaxPool2d", MaxPool2d::new),
            Map.entry("AvgPool2d", AvgPool2d::new),
            Map.entry("GlobalAvgPool", GlobalAvgPool::new),
            Map.entry("Flatten", Flatten::new),
            Map.entry("Dropout", Dropout::new),
            Map.entry("Add", Add::new),
            Map.entry("Hardswish", Hardswish::new),
            Map.entry("Hardsigmoid", Hardsigmoid::new),
            Map.entry("SiLU", SiLU::new),
            Map.entry("GELU", GELU::new),
            Map.entry("Tanh", Tanh::new),
            Map.entry("Hardtanh", Hardtanh::new),
            Map.entry("ELU", ELU::new),
            Map.entry("PReLU", PReLU::new),
            Map.entry("AdaptiveAvgPool2d", AdaptiveAvgPool2d::new),
            Map.entry("AdaptiveMaxPool2d", AdaptiveMaxPool2d::new),
            Map.entry("ChannelMean", ChannelMean::new),
            Map.entry("ChannelMax", ChannelMax::new),
            Map.entry("ZeroPad2d", ZeroPad2d::new),
            Map.entry("Mul", Mul::new),
            Map.entry("Concat", Concat::new),
            Map.entry("Slice", Slice::new),
            Map.entry("ChannelShuffle", ChannelShuffle::new),
            Map.entry("Unflatten", Unflatten::new));

    private Layers() {
    }

    public static boolean supports(String type) {
        return TYPES.containsKey(type);
    }

    public static String supportedList() {
        return String.join(", ", new TreeSet<>(TYPES.keySet()));
    }

    /** A new, not yet loaded layer of this type. */
    public static Layer create(String type, String name, List<String> inputs) {
        return TYPES.get(type).apply(name, inputs);
    }
}
