package pdinfer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import pdinfer.int8.Int8Graph;
import pdinfer.int8.Int8Weight;
import pdinfer.int8.Quantization;
import pdinfer.layers.Layer;
import pdinfer.layers.Layers;

/**
 * A loaded weight file: the checked layers, their output shapes for one image, and the graph
 * runner. Loading checks everything pdinfer/graph.py checks (docs/FORMAT.md, sections 2 to 4,
 * and the `activations` entry of section 1.3), so running cannot fail on a file that loaded. A
 * file with an `activations` entry computes in int8 ({@link #int8}).
 */
public final class Graph implements Traced {
    public static final String FORMAT_NAME = "pdinfer";
    public static final List<String> FORMAT_VERSIONS = List.of("1", "2");
    /** The metadata keys every weight file has, by version; version 1 files have no whole-file checksum. */
    public static final Map<String, List<String>> WEIGHT_KEYS = Map.of(
            "1", List.of("layers", "input_shape", "classes", "data_sha256"),
            "2", List.of("layers", "input_shape", "classes", "file_sha256"));
    public static final String INPUT = "input";
    public static final long MAX_VALUES = 1L << 27; // the most values any layer may output for one image
    private static final Set<String> LAYER_KEYS = Set.of("name", "type", "inputs", "params", "tensors");
    /** The layer types whose weight may be stored as F16, BF16 or I8 (docs/FORMAT.md, section 1.2). */
    private static final Set<String> COMPRESSIBLE = Set.of("Conv2d", "Linear");

    public final String path;
    public final List<Layer> layers;
    public final Map<String, int[]> shapes; // layer name (and "input") -> output shape with N = 1
    public final int[] inputShape; // (C, H, W)
    public final List<String> classes;
    public final String dataSha256; // SHA-256 of the data section: the weights' identity
    public final boolean headerVerified; // the whole file was checksummed (false for version 1 files)
    public final Int8Graph int8; // the int8 computation (an `activations` entry), or null: float32
    private final Map<String, Layer> byName = new LinkedHashMap<>();

    private Graph(String path, List<Layer> layers, Map<String, int[]> shapes, int[] inputShape,
                  List<String> classes, String dataSha256, boolean headerVerified, Int8Graph int8) {
        this.path = path;
        this.layers = layers;
        this.shapes = shapes;
        this.inputShape = inputShape;
        this.classes = classes;
        this.dataSha256 = dataSha256;
        this.headerVerified = headerVerified;
        this.int8 = int8;
        for (Layer layer : layers) {
            byName.put(layer.name, layer);
        }
    }

    /** Read a weight file and check every layer, tensor, reference and shape in it. */
    public static Graph load(Path file) {
        return load(file, true);
    }

    /** As {@link #load(Path)}; {@code verifyChecksum = false} skips the checksums (for fuzzing below them). */
    public static Graph load(Path file, boolean verifyChecksum) {
        Container container = Container.read(file, verifyChecksum);
        String where = container.path;
        Map<String, String> meta = container.metadata;
        String version = meta.get("format_version");
        container.checkMetadata(FORMAT_NAME, FORMAT_VERSIONS,
                version == null ? List.of() : WEIGHT_KEYS.getOrDefault(version, List.of()));
        Object entries = Json.parse(meta.get("layers"), "metadata 'layers'", where);
        if (!(entries instanceof List) || ((List<?>) entries).isEmpty()) {
            throw new FormatException(where + ": metadata 'layers' must be a non-empty JSON array");
        }
        int[] inputShape = inputShape(meta.get("input_shape"), where);
        List<String> classes = classes(meta.get("classes"), where);

        Map<String, int[]> shapes = new LinkedHashMap<>();
        shapes.put(INPUT, new int[] {1, inputShape[0], inputShape[1], inputShape[2]});
        Map<String, String> used = new LinkedHashMap<>(); // tensor -> layer, in the order layers use them
        Map<String, Int8Weight> int8Weights = new LinkedHashMap<>(); // layer -> its I8 weight, as stored
        List<Layer> layers = new ArrayList<>();
        int index = 0;
        for (Object entry : (List<?>) entries) {
            layers.add(buildLayer(entry, index++, shapes, container, used, int8Weights));
        }

        if (!new ArrayList<>(used.keySet()).equals(container.names())) {
            List<String> unused = new ArrayList<>(container.names());
            unused.removeAll(used.keySet());
            throw new FormatException(unused.isEmpty()
                    ? where + ": tensors are not stored in the order the layers use them"
                    : where + ": tensors not used by any layer: " + unused);
        }
        Set<String> consumed = new HashSet<>();
        for (Layer layer : layers) {
            consumed.addAll(layer.inputs);
        }
        List<String> dangling = new ArrayList<>();
        for (Layer layer : layers.subList(0, layers.size() - 1)) {
            if (!consumed.contains(layer.name)) {
                dangling.add(layer.name);
            }
        }
        if (!dangling.isEmpty()) {
            throw new FormatException(where + ": layers whose output nobody uses (only the last layer may be "
                    + "the output): " + dangling);
        }
        int[] out = shapes.get(layers.get(layers.size() - 1).name);
        long outputs = Tensor.size(out) / out[0];
        if (classes.size() != outputs) {
            throw new FormatException(where + ": " + classes.size() + " class names for " + outputs + " output values");
        }
        Int8Graph int8 = null;
        if (meta.containsKey(Quantization.KEY)) {
            Map<String, Quantization> activations = Quantization.decode(meta.get(Quantization.KEY), shapes.keySet(), where);
            int8 = Int8Graph.build(layers, shapes, int8Weights, activations, where);
        }
        return new Graph(where, List.copyOf(layers), shapes, inputShape, List.copyOf(classes), container.dataSha256,
                container.headerVerified, int8);
    }

    private static int[] inputShape(String text, String where) {
        Object shape = Json.parse(text, "metadata 'input_shape'", where);
        if (shape instanceof List && ((List<?>) shape).size() == 3
                && ((List<?>) shape).stream().allMatch(d -> d instanceof Long && (Long) d >= 1 && (Long) d <= MAX_VALUES)) {
            int[] dims = ((List<?>) shape).stream().mapToInt(d -> (int) (long) (Long) d).toArray();
            if ((double) dims[0] * dims[1] * dims[2] <= MAX_VALUES) {
                return dims;
            }
        }
        throw new FormatException(where + ": metadata 'input_shape' must be [C, H, W] positive integers with at most "
                + MAX_VALUES + " values, got " + text);
    }

    private static List<String> classes(String text, String where) {
        Object classes = Json.parse(text, "metadata 'classes'", where);
        if (!(classes instanceof List) || !((List<?>) classes).stream().allMatch(c -> c instanceof String)) {
            throw new FormatException(where + ": metadata 'classes' must be a JSON array of strings");
        }
        List<String> names = new ArrayList<>();
        for (Object c : (List<?>) classes) {
            names.add((String) c);
        }
        return names;
    }

    /**
     * An I8 weight in place: q * scale[o], one float32 multiply per value (docs/KERNELS.md).
     * weight: (O, ...) the integers q as floats; scale: (O,).
     */
    static void dequantize(float[] weight, float[] scale) {
        int perChannel = weight.length / scale.length;
        for (int i = 0; i < weight.length; i++) {
            weight[i] = weight[i] * scale[i / perChannel];
        }
    }

    /** Check one layer-list entry against everything before it and return the loaded layer (an I8
     *  weight is dequantized for the float32 kernels and kept, as stored, in int8Weights). */
    private static Layer buildLayer(Object entry, int index, Map<String, int[]> shapes, Container container,
                                    Map<String, String> used, Map<String, Int8Weight> int8Weights) {
        String where = container.path + ": layer " + index;
        if (!(entry instanceof Map) || !Container.asMap(entry).keySet().equals(LAYER_KEYS)) {
            throw new FormatException(where + " must be an object with exactly the keys " + LAYER_KEYS);
        }
        Map<String, Object> e = Container.asMap(entry);
        Object name = e.get("name");
        Object type = e.get("type");
        Object inputs = e.get("inputs");
        Object params = e.get("params");
        Object tensorNames = e.get("tensors");
        if (!(name instanceof String) || ((String) name).isEmpty() || shapes.containsKey(name)) {
            throw new FormatException(where + ": name " + name + " is empty, reserved or used twice");
        }
        where = container.path + ": layer '" + name + "'";
        if (!(type instanceof String) || !Layers.supports((String) type)) {
            throw new UnsupportedLayerException(where + ": layer type " + type + " is not supported (supported: "
                    + Layers.supportedList() + ")");
        }
        if (!(inputs instanceof List) || !((List<?>) inputs).stream().allMatch(i -> i instanceof String)) {
            throw new FormatException(where + ": 'inputs' must list layer names, got " + inputs);
        }
        List<String> inputNames = new ArrayList<>();
        for (Object i : (List<?>) inputs) {
            inputNames.add((String) i);
        }
        Layer layer = Layers.create((String) type, (String) name, inputNames);
        if (!(inputNames.size() == layer.numInputs() || layer.variadic() && inputNames.size() > layer.numInputs())) {
            throw new FormatException(where + ": 'inputs' must list " + layer.numInputs()
                    + (layer.variadic() ? " or more" : "") + " layer name(s), got " + inputs);
        }
        for (String i : inputNames) {
            if (!shapes.containsKey(i)) {
                throw new FormatException(where + ": input '" + i + "' is not the graph input or an earlier layer");
            }
        }
        if (!(params instanceof Map) || !(tensorNames instanceof Map)) {
            throw new FormatException(where + ": 'params' and 'tensors' must be JSON objects");
        }
        Map<String, int[]> expected;
        try {
            layer.loadParam(Container.asMap(params));
            expected = new LinkedHashMap<>(layer.tensorShapes());
        } catch (UnsupportedLayerException ex) {
            throw new UnsupportedLayerException(container.path + ": " + ex.getMessage());
        } catch (FormatException ex) {
            throw new FormatException(container.path + ": " + ex.getMessage());
        }
        Map<String, Object> roles = Container.asMap(tensorNames);
        boolean compressible = COMPRESSIBLE.contains(type);
        Object weightName = roles.get("weight");
        boolean int8 = compressible && weightName instanceof String && container.has((String) weightName)
                && "I8".equals(container.dtype((String) weightName));
        if (int8) {
            expected.put("weight_scale", new int[] {expected.get("weight")[0]});
        }
        if (!roles.keySet().equals(expected.keySet())) {
            String hint = int8 ? " (an I8 weight needs its weight_scale)"
                    : roles.containsKey("weight_scale") ? " (weight_scale goes only with an I8 weight)" : "";
            throw new FormatException(where + ": tensors must have the roles " + expected.keySet() + ", got "
                    + roles.keySet() + hint);
        }
        Map<String, Tensor> arrays = new LinkedHashMap<>();
        for (Map.Entry<String, Object> role : roles.entrySet()) {
            Object tensor = role.getValue();
            if (!(tensor instanceof String) || !container.has((String) tensor)) {
                throw new FormatException(where + ": tensor " + tensor + " for role '" + role.getKey()
                        + "' is not in the file");
            }
            if (used.containsKey(tensor)) {
                throw new FormatException(where + ": tensor '" + tensor + "' is already used by layer '"
                        + used.get(tensor) + "'");
            }
            Tensor array = container.tensor((String) tensor);
            if (!Arrays.equals(array.shape, expected.get(role.getKey()))) {
                throw new FormatException(where + ": tensor '" + tensor + "' (" + role.getKey() + ") has shape "
                        + Tensor.shapeString(array.shape) + ", expected "
                        + Tensor.shapeString(expected.get(role.getKey())));
            }
            String dtype = container.dtype((String) tensor);
            if (!dtype.equals("F32") && !(role.getKey().equals("weight") && compressible)) {
                throw new FormatException(where + ": tensor '" + tensor + "' (" + role.getKey() + ") is stored as "
                        + dtype + "; only the weight of Conv2d and Linear may be F16, BF16 or I8");
            }
            for (float v : array.data) {
                if (!Float.isFinite(v)) {
                    throw new FormatException(where + ": tensor '" + tensor + "' holds NaN or infinite values");
                }
                if (role.getKey().equals("weight_scale") && !(v > 0)) {
                    throw new FormatException(where + ": tensor '" + tensor + "' (weight_scale) must be > 0 for "
                            + "every output channel, holds " + v);
                }
            }
            used.put((String) tensor, (String) name);
            arrays.put(role.getKey(), array);
        }
        if (int8) {
            float[] weight = arrays.get("weight").data;
            byte[] levels = new byte[weight.length];
            for (int i = 0; i < weight.length; i++) {
                levels[i] = (byte) weight[i];
            }
            float[] scale = arrays.remove("weight_scale").data;
            int8Weights.put((String) name, new Int8Weight(levels, scale));
            dequantize(weight, scale);
        }
        int[] shape;
        try {
            layer.loadModel(arrays);
            List<int[]> inShapes = new ArrayList<>();
            for (String i : inputNames) {
                inShapes.add(shapes.get(i));
            }
            shape = layer.outputShape(inShapes);
        } catch (FormatException ex) {
            throw new FormatException(container.path + ": " + ex.getMessage());
        }
        if (Tensor.size(shape) > MAX_VALUES) {
            throw new FormatException(where + ": output shape " + Tensor.shapeString(shape) + " exceeds "
                    + MAX_VALUES + " values per image");
        }
        shapes.put((String) name, shape);
        return layer;
    }

    public List<String> layerNames() {
        List<String> names = new ArrayList<>();
        for (Layer layer : layers) {
            names.add(layer.name);
        }
        return names;
    }

    /** The computation pdinfer's reference runs for this file: the int8 one, or the layers in float32. */
    public Traced reference() {
        return int8 != null ? int8 : this;
    }

    /** Every layer's output for one image (1, C, H, W), in layer order (the float32 graph runner). */
    @Override
    public Map<String, Tensor> trace(Tensor image) {
        if (!Arrays.equals(image.shape, shapes.get(INPUT))) {
            throw new PdinferException("input shape must be " + Tensor.shapeString(shapes.get(INPUT)) + ", got "
                    + Tensor.shapeString(image.shape));
        }
        Map<String, Tensor> values = new LinkedHashMap<>();
        values.put(INPUT, image);
        for (Layer layer : layers) {
            Tensor[] ins = new Tensor[layer.inputs.size()];
            for (int k = 0; k < ins.length; k++) {
                ins[k] = values.get(layer.inputs.get(k));
            }
            values.put(layer.name, layer.forward(ins));
        }
        values.remove(INPUT);
        return values;
    }

    /** The model's output for one image (1, C, H, W), as pdinfer computes it (in int8 if the file says so). */
    public Tensor run(Tensor image) {
        return int8 != null ? int8.run(image) : trace(image).get(layers.get(layers.size() - 1).name);
    }

    @Override
    public String computation() {
        return "float32";
    }

    @Override
    public List<String> valueNames() {
        return layerNames();
    }

    @Override
    public String type(String value) {
        return byName.get(value).type();
    }

    @Override
    public List<String> inputs(String value) {
        return byName.get(value).inputs;
    }

    @Override
    public boolean storesLevels(String value) {
        return false;
    }

    @Override
    public Tensor forward(String value, Map<String, Tensor> stored) {
        return byName.get(value).forward(byName.get(value).inputs.stream().map(stored::get).toArray(Tensor[]::new));
    }
}
