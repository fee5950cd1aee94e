package pdinfer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import pdinfer.int8.Int8Graph;
import pdinfer.int8.QTensor;

/**
 * A golden bundle (docs/GOLDEN.md): per input i, `input.i`, `reference.i.<layer>` and optionally
 * `torch.i.<layer>` for the manifest's layers (every layer of the weights, or a subset), with a
 * JSON manifest. The bundle of an int8-computing file (manifest `computation`: "int8") holds the
 * values of its int8 computation, the uint8 ones (`uint8_layers`) as float32 levels 0..255. The
 * same checks as pdinfer.golden.read_golden. The whole file is checksummed in
 * a streaming pass and each tensor is read from the file only when asked for (Container), so a
 * bundle of any size is checked one input at a time.
 */
public final class Golden {
    public static final String FORMAT_NAME = "pdinfer-golden";
    public static final String FORMAT_VERSION = "2";

    public final String path;
    public final Map<String, Object> manifest;
    public final List<String> inputKinds; // per input, e.g. "uniform", "zeros"
    public final List<String> layers; // the bundle's layer names, in execution order
    public final boolean subset; // true: not every layer of the weights is in the bundle
    public final boolean hasTorch;
    public final double torchAtolFactor;
    public final String computation; // "float32", or "int8": the values of the int8 computation
    public final Set<String> uint8Layers; // the layers stored as uint8 levels
    private final Container container;
    private final Set<String> layerSet;

    private Golden(Container container, Map<String, Object> manifest, List<String> inputKinds, List<String> layers,
                   boolean subset, boolean hasTorch, double torchAtolFactor, String computation,
                   Set<String> uint8Layers) {
        this.path = container.path;
        this.container = container;
        this.manifest = manifest;
        this.inputKinds = inputKinds;
        this.layers = layers;
        this.layerSet = Set.copyOf(layers);
        this.subset = subset;
        this.hasTorch = hasTorch;
        this.torchAtolFactor = torchAtolFactor;
        this.computation = computation;
        this.uint8Layers = uint8Layers;
    }

    public int inputCount() {
        return inputKinds.size();
    }

    public Tensor input(int i) {
        return container.tensor("input." + i);
    }

    /** True if the bundle holds this layer's outputs. */
    public boolean has(String layer) {
        return layerSet.contains(layer);
    }

    /** A reference output; a uint8 layer's must hold levels (FormatException if not). */
    public Tensor reference(int i, String layer) {
        String name = "reference." + i + "." + layer;
        Tensor tensor = container.tensor(name);
        if (uint8Layers.contains(layer) && !QTensor.holdsLevels(tensor)) {
            throw new FormatException(path + ": tensor '" + name + "' must hold uint8 levels (integers 0 to 255), "
                    + "as the manifest's 'uint8_layers' says");
        }
        return tensor;
    }

    public Tensor torch(int i, String layer) {
        return container.tensor("torch." + i + "." + layer);
    }

    /** A manifest value as text ("null" if absent). */
    public String info(String key) {
        return String.valueOf(manifest.get(key));
    }

    public static Golden read(Path file) {
        Container container = Container.read(file, true);
        String where = container.path;
        Map<String, String> meta = container.metadata;
        container.checkMetadata(FORMAT_NAME, FORMAT_VERSION, List.of("manifest", "file_sha256"));
        Object parsed = Json.parse(meta.get("manifest"), "metadata 'manifest'", where);
        if (!(parsed instanceof Map)) {
            throw new FormatException(where + ": manifest is not a JSON object");
        }
        Map<String, Object> manifest = Container.asMap(parsed);
        for (String key : List.of("weights", "weights_sha256", "inputs", "layers", "subset", "torch_atol_factor")) {
            if (!manifest.containsKey(key)) {
                throw new FormatException(where + ": manifest lacks the key '" + key + "'");
            }
        }
        List<String> kinds = new ArrayList<>();
        Object inputs = manifest.get("inputs");
        if (!(inputs instanceof List) || ((List<?>) inputs).isEmpty()) {
            throw new FormatException(where + ": manifest 'inputs' must be a non-empty list");
        }
        for (Object item : (List<?>) inputs) {
            if (!(item instanceof Map) || !("input." + kinds.size()).equals(Container.asMap(item).get("name"))
                    || !(Container.asMap(item).get("kind") instanceof String)) {
                throw new FormatException(where + ": manifest 'inputs' must be {\"name\": \"input.<i>\", \"kind\": ...} "
                        + "in order");
            }
            kinds.add((String) Container.asMap(item).get("kind"));
        }
        Object layerList = manifest.get("layers");
        List<String> layers = new ArrayList<>();
        if (layerList instanceof List) {
            for (Object name : (List<?>) layerList) {
                if (!(name instanceof String) || ((String) name).isEmpty() || layers.contains(name)) {
                    layers.clear();
                    break;
                }
                layers.add((String) name);
            }
        }
        if (layers.isEmpty()) {
            throw new FormatException(where + ": manifest 'layers' must be a non-empty list of unique layer names");
        }
        if (!(manifest.get("subset") instanceof Boolean)) {
            throw new FormatException(where + ": manifest 'subset' must be true or false, got " + manifest.get("subset"));
        }
        Object factor = manifest.get("torch_atol_factor");
        double atolFactor = factor instanceof Double ? (Double) factor : factor instanceof Long ? (Long) factor : -1;
        if (!(atolFactor > 0 && atolFactor < 1)) {
            throw new FormatException(where + ": manifest 'torch_atol_factor' must be a number in (0, 1), got " + factor);
        }
        if (!(manifest.get("weights_sha256") instanceof String)) {
            throw new FormatException(where + ": manifest 'weights_sha256' must be a string");
        }
        String computation = "float32";
        Set<String> uint8Layers = Set.of();
        if (manifest.containsKey("computation") || manifest.containsKey("uint8_layers")) {
            if (!Int8Graph.COMPUTATION.equals(manifest.get("computation"))) {
                throw new FormatException(where + ": manifest 'computation' must be '" + Int8Graph.COMPUTATION
                        + "' (or absent: float32), got " + manifest.get("computation"));
            }
            computation = Int8Graph.COMPUTATION;
            uint8Layers = uint8Layers(manifest.get("uint8_layers"), layers, where);
        }
        boolean hasTorch = container.names().stream().anyMatch(n -> n.startsWith("torch."));
        Set<String> expected = new HashSet<>();
        for (int i = 0; i < kinds.size(); i++) {
            expected.add("input." + i);
            for (String layer : layers) {
                expected.add("reference." + i + "." + layer);
                if (hasTorch) {
                    expected.add("torch." + i + "." + layer);
                }
            }
        }
        if (!expected.equals(new HashSet<>(container.names()))) {
            Set<String> missing = new HashSet<>(expected);
            missing.removeAll(container.names());
            Set<String> extra = new HashSet<>(container.names());
            extra.removeAll(expected);
            throw new FormatException(where + ": tensors do not match the manifest; missing " + missing.size()
                    + " (e.g. " + missing.stream().sorted().limit(3).toList() + "), unexpected " + extra.size()
                    + " (e.g. " + extra.stream().sorted().limit(3).toList() + ")");
        }
        for (String name : container.names()) {
            if (!container.dtype(name).equals("F32")) {
                throw new FormatException(where + ": tensor '" + name + "' is " + container.dtype(name)
                        + "; a golden bundle holds only F32");
            }
        }
        return new Golden(container, manifest, List.copyOf(kinds), List.copyOf(layers), (Boolean) manifest.get("subset"),
                hasTorch, atolFactor, computation, uint8Layers);
    }

    /** The manifest's 'uint8_layers': layers of the bundle, each once. */
    private static Set<String> uint8Layers(Object value, List<String> layers, String where) {
        Set<String> names = new HashSet<>();
        boolean ok = value instanceof List;
        if (ok) {
            for (Object name : (List<?>) value) {
                ok &= name instanceof String && layers.contains(name) && names.add((String) name);
            }
        }
        if (!ok) {
            throw new FormatException(where + ": manifest 'uint8_layers' must list layers of the bundle, each once");
        }
        return Set.copyOf(names);
    }
}
