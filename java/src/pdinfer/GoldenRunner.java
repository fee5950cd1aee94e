package pdinfer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Checks this kit's layers against a golden bundle (docs/GOLDEN.md):
 *
 *   java -cp build pdinfer.GoldenRunner WEIGHTS.pdw GOLDEN.golden.pdw [--verbose]
 *
 * For every golden input, every layer of the bundle is checked twice: "per layer", run on the
 * reference outputs of its input layers from the bundle (a mismatch points at that layer; only
 * when the bundle holds those inputs), and "end to end", this kit's own graph run from the input
 * image. Both must equal pdinfer's reference outputs bit for bit, except that the EXP_LAYER_TYPES
 * (exp, expm1, tanh in double) may be 1 ulp off (counted). End-to-end outputs must also be within the
 * manifest's tolerance of PyTorch's, when the bundle has them. Inputs are read one at a time.
 * A file that computes in int8 is checked value by value of its int8 computation
 * ({@link Graph#reference()}): its uint8 values are compared as levels (max|diff| in levels).
 * Prints a per-layer table; exits 0 if everything matches, 1 on a mismatch, 2 on an error.
 */
public final class GoldenRunner {
    /** Layers whose reference calls exp, expm1 or tanh: the only ones allowed to differ, by at most 1 ulp. */
    static final Set<String> EXP_LAYER_TYPES = Set.of("Sigmoid", "Softmax", "SiLU", "Tanh", "GELU", "ELU");

    /** One layer's results over all inputs. */
    private static final class LayerResult {
        final Diff perLayer = new Diff();
        boolean perLayerChecked; // false when an input layer's outputs are not in the bundle
        final Diff endToEnd = new Diff();
        double torchMaxAbs;
        double torchWorstRatio; // max over inputs of max|java - torch| / atol
        boolean torchChecked;

        boolean passes(boolean expLayer) {
            long allowedUlp = expLayer ? 1 : 0;
            return perLayer.maxUlp <= allowedUlp && endToEnd.maxUlp <= allowedUlp
                    && (!torchChecked || torchWorstRatio <= 1.0);
        }
    }

    public static void main(String[] args) {
        List<String> positional = new ArrayList<>(Arrays.asList(args));
        boolean verbose = positional.remove("--verbose");
        if (positional.size() != 2) {
            System.err.println("usage: java -cp BUILD pdinfer.GoldenRunner WEIGHTS.pdw GOLDEN.golden.pdw [--verbose]");
            System.exit(2);
        }
        try {
            System.exit(run(Path.of(positional.get(0)), Path.of(positional.get(1)), verbose) ? 0 : 1);
        } catch (PdinferException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
        }
    }

    /** Run every check and print the report; true if everything matches. */
    public static boolean run(Path weights, Path goldenFile, boolean verbose) {
        Graph graph = Graph.load(weights);
        Golden golden = Golden.read(goldenFile);
        String sha256 = Container.fileSha256(weights);
        if (!sha256.equals(golden.manifest.get("weights_sha256"))) {
            throw new PdinferException(goldenFile + " was made from weights with SHA-256 "
                    + golden.manifest.get("weights_sha256") + " (" + golden.info("weights") + "), but " + weights
                    + " has SHA-256 " + sha256);
        }
        Traced model = graph.reference();
        List<String> values = model.valueNames();
        List<String> checked = values.stream().filter(golden::has).toList();
        if (!golden.layers.equals(checked) || golden.subset != (checked.size() < values.size())) {
            throw new PdinferException(goldenFile + ": the manifest's layers " + (golden.subset ? "(a subset) " : "")
                    + "are not " + (golden.subset ? "some of " : "") + weights + "'s layers in execution order"
                    + (graph.int8 != null ? " (the values of its int8 computation)" : ""));
        }
        Set<String> uint8 = Set.copyOf(checked.stream().filter(model::storesLevels).toList());
        if (!golden.computation.equals(model.computation()) || !golden.uint8Layers.equals(uint8)) {
            throw new PdinferException(goldenFile + ": the manifest says a " + golden.computation + " computation with "
                    + "uint8 layers " + golden.uint8Layers + "; " + weights + " computes in " + model.computation()
                    + " with uint8 layers " + uint8);
        }
        System.out.printf("weights %s (sha256 %s...)%ngolden  %s: %d inputs %s, pdinfer %s, torch %s%n",
                weights, sha256.substring(0, 12), goldenFile, golden.inputCount(), golden.inputKinds,
                golden.info("pdinfer_version"), golden.hasTorch ? golden.info("torch_version") : "none (reference only)");
        if (graph.int8 != null) {
            System.out.printf("computation: int8 (%d steps for %d layers; u8: uint8 values, max|diff| in levels)%n",
                    values.size(), graph.layers.size());
        }

        Map<String, LayerResult> results = new LinkedHashMap<>();
        for (String value : checked) {
            results.put(value, new LayerResult());
        }
        for (int i = 0; i < golden.inputCount(); i++) {
            Map<String, LayerResult> perInput = new LinkedHashMap<>();
            for (String value : checked) {
                perInput.put(value, new LayerResult());
            }
            checkInput(graph, model, golden, i, checked, perInput);
            for (Map.Entry<String, LayerResult> e : perInput.entrySet()) {
                merge(results.get(e.getKey()), e.getValue());
            }
            if (verbose) {
                System.out.printf("%ninput.%d (%s)%n", i, golden.inputKinds.get(i));
                printTable(graph, model, checked, perInput, golden);
            }
        }
        System.out.printf("%nall %d inputs, worst case per layer%n", golden.inputCount());
        return printTable(graph, model, checked, results, golden);
    }

    /** Run one golden input per layer and end to end, folding the comparisons of the `checked`
     *  values into `results`. */
    private static void checkInput(Graph graph, Traced model, Golden golden, int i, List<String> checked,
                                   Map<String, LayerResult> results) {
        Tensor image = golden.input(i);
        expectShape(image, graph.shapes.get(Graph.INPUT), golden, "input." + i);
        Map<String, Tensor> endToEnd = model.trace(image);
        for (String value : checked) {
            LayerResult result = results.get(value);
            int[] shape = graph.shapes.get(value);
            Tensor reference = expectShape(golden.reference(i, value), shape, golden, "reference." + i + "." + value);

            List<String> inputs = model.inputs(value);
            result.perLayerChecked = inputs.stream().allMatch(in -> in.equals(Graph.INPUT) || golden.has(in));
            if (result.perLayerChecked) {
                Map<String, Tensor> referenceInputs = new LinkedHashMap<>();
                for (String in : inputs) {
                    referenceInputs.put(in, in.equals(Graph.INPUT) ? image : golden.reference(i, in));
                }
                result.perLayer.add(model.forward(value, referenceInputs).data, reference.data);
            }

            float[] mine = endToEnd.get(value).data;
            result.endToEnd.add(mine, reference.data);
            if (golden.hasTorch) {
                Tensor torch = expectShape(golden.torch(i, value), shape, golden, "torch." + i + "." + value);
                double atol = golden.torchAtolFactor * Math.max(1.0, Diff.maxAbs(torch.data));
                double diff = Diff.maxAbsDiff(mine, torch.data);
                result.torchChecked = true;
                result.torchMaxAbs = Math.max(result.torchMaxAbs, diff);
                result.torchWorstRatio = Math.max(result.torchWorstRatio, diff / atol);
            }
        }
    }

    private static Tensor expectShape(Tensor tensor, int[] shape, Golden golden, String name) {
        if (!Arrays.equals(tensor.shape, shape)) {
            throw new FormatException(golden.path + ": tensor '" + name + "' has shape "
                    + Tensor.shapeString(tensor.shape) + ", the graph says " + Tensor.shapeString(shape));
        }
        return tensor;
    }

    private static void merge(LayerResult into, LayerResult from) {
        into.perLayer.merge(from.perLayer);
        into.perLayerChecked |= from.perLayerChecked;
        into.endToEnd.merge(from.endToEnd);
        into.torchChecked |= from.torchChecked;
        into.torchMaxAbs = Math.max(into.torchMaxAbs, from.torchMaxAbs);
        into.torchWorstRatio = Math.max(into.torchWorstRatio, from.torchWorstRatio);
    }

    /** Print one row per checked value and a verdict line; true if every value passes. */
    private static boolean printTable(Graph graph, Traced model, List<String> checked, Map<String, LayerResult> results,
                                      Golden golden) {
        String format = "%-22s %-16s %-16s | %9s %4s | %9s %4s | %9s %8s | %s%n";
        System.out.printf(format, "", "", "", "per layer", "", "end to end", "", "vs torch", "", "");
        System.out.printf(format, "layer", "type", "shape", "max|diff|", "ulp", "max|diff|", "ulp",
                "max|diff|", "of atol", "status");
        int failed = 0;
        long oneUlpValues = 0;
        for (String value : checked) {
            LayerResult r = results.get(value);
            boolean expLayer = EXP_LAYER_TYPES.contains(model.type(value));
            boolean ok = r.passes(expLayer);
            long offByOne = r.perLayer.mismatches + r.endToEnd.mismatches;
            String status = !ok ? "FAIL" : offByOne == 0 ? "ok" : "ok (" + offByOne + " values 1 ulp off)";
            if (!ok) {
                failed++;
            } else {
                oneUlpValues += offByOne;
            }
            System.out.printf(format, value, model.type(value),
                    Tensor.shapeString(graph.shapes.get(value)) + (model.storesLevels(value) ? " u8" : ""),
                    r.perLayerChecked ? number(r.perLayer.maxAbs) : "-", r.perLayerChecked ? ulps(r.perLayer.maxUlp) : "-",
                    number(r.endToEnd.maxAbs),
                    ulps(r.endToEnd.maxUlp), r.torchChecked ? number(r.torchMaxAbs) : "-",
                    r.torchChecked ? String.format("%.2f%%", 100 * r.torchWorstRatio) : "-", status);
        }
        String layers = golden.subset ? checked.size() + " of " + model.valueNames().size() + " layers in the bundle"
                : checked.size() + " layers";
        if (failed == 0) {
            System.out.printf("PASS: %s bit-exact with pdinfer's reference (%d values of exp/tanh "
                    + "layers 1 ulp off)%s%n", layers, oneUlpValues,
                    golden.hasTorch ? String.format(", within %.0e x max(1, max|torch|) of torch", golden.torchAtolFactor) : "");
        } else {
            System.out.printf("FAIL: %d of %d layers do not match%n", failed, checked.size());
        }
        return failed == 0;
    }

    private static String number(double v) {
        return v == 0 ? "0" : String.format("%.2e", v);
    }

    private static String ulps(long v) {
        return v == Long.MAX_VALUE ? "NaN" : v > 9999 ? ">9999" : Long.toString(v);
    }
}
