package pdinfer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import pdinfer.layers.Layer;

/**
 * Checks this kit's layers against a golden bundle (docs/GOLDEN.md):
 *
 *   java -cp build pdinfer.GoldenRunner WEIGHTS.pdw GOLDEN.golden.pdw [--verbose]
 *
 * For every golden input, every layer runs twice: "per layer", fed the reference outputs of its
 * input layers from the bundle (a mismatch points at that layer), and "end to end", fed this
 * kit's own outputs from the input image on. Both must equal pdinfer's reference outputs bit
 * for bit, except that the EXP_LAYER_TYPES (exp, expm1, tanh in double) may be 1 ulp off (counted). End-to-end
 * outputs must also be within the manifest's tolerance of PyTorch's, when the bundle has them.
 * Prints a per-layer table; exits 0 if everything matches, 1 on a mismatch, 2 on an error.
 */
public final class GoldenRunner {
    /** Layers whose reference calls exp, expm1 or tanh: the only ones allowed to differ, by at most 1 ulp. */
    static final Set<String> EXP_LAYER_TYPES = Set.of("Sigmoid", "Softmax", "SiLU", "Tanh", "GELU", "ELU");

    /** One layer's results over all inputs. */
    private static final class LayerResult {
        final Diff perLayer = new Diff();
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
        if (!golden.layers.equals(graph.layerNames())) {
            throw new PdinferException(goldenFile + ": the manifest's layer list differs from " + weights + "'s");
        }
        System.out.printf("weights %s (sha256 %s...)%ngolden  %s: %d inputs %s, pdinfer %s, torch %s%n",
                weights, sha256.substring(0, 12), goldenFile, golden.inputCount(), golden.inputKinds,
                golden.info("pdinfer_version"), golden.hasTorch ? golden.info("torch_version") : "none (reference only)");

        Map<String, LayerResult> results = new LinkedHashMap<>();
        for (String name : graph.layerNames()) {
            results.put(name, new LayerResult());
        }
        for (int i = 0; i < golden.inputCount(); i++) {
            Map<String, LayerResult> perInput = new LinkedHashMap<>();
            for (String name : graph.layerNames()) {
                perInput.put(name, new LayerResult());
            }
            checkInput(graph, golden, i, perInput);
            for (Map.Entry<String, LayerResult> e : perInput.entrySet()) {
                merge(results.get(e.getKey()), e.getValue());
            }
            if (verbose) {
                System.out.printf("%ninput.%d (%s)%n", i, golden.inputKinds.get(i));
                printTable(graph, perInput, golden);
            }
        }
        System.out.printf("%nall %d inputs, worst case per layer%n", golden.inputCount());
        return printTable(graph, results, golden);
    }

    /** Run one golden input per layer and end to end, folding the comparisons into `results`. */
    private static void checkInput(Graph graph, Golden golden, int i, Map<String, LayerResult> results) {
        Tensor image = golden.input(i);
        expectShape(image, graph.shapes.get(Graph.INPUT), golden, "input." + i);
        Map<String, Tensor> endToEnd = graph.trace(image);
        for (Layer layer : graph.layers) {
            LayerResult result = results.get(layer.name);
            int[] shape = graph.shapes.get(layer.name);
            Tensor reference = expectShape(golden.reference(i, layer.name), shape, golden, "reference." + i + "." + layer.name);

            Tensor[] referenceInputs = new Tensor[layer.inputs.size()];
            for (int k = 0; k < referenceInputs.length; k++) {
                String in = layer.inputs.get(k);
                referenceInputs[k] = in.equals(Graph.INPUT) ? image : golden.reference(i, in);
            }
            result.perLayer.add(layer.forward(referenceInputs).data, reference.data);

            float[] mine = endToEnd.get(layer.name).data;
            result.endToEnd.add(mine, reference.data);
            if (golden.hasTorch) {
                Tensor torch = expectShape(golden.torch(i, layer.name), shape, golden, "torch." + i + "." + layer.name);
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
        into.endToEnd.merge(from.endToEnd);
        into.torchChecked |= from.torchChecked;
        into.torchMaxAbs = Math.max(into.torchMaxAbs, from.torchMaxAbs);
        into.torchWorstRatio = Math.max(into.torchWorstRatio, from.torchWorstRatio);
    }

    /** Print one row per layer and a verdict line; true if every layer passes. */
    private static boolean printTable(Graph graph, Map<String, LayerResult> results, Golden golden) {
        String format = "%-22s %-13s %-16s | %9s %4s | %9s %4s | %9s %8s | %s%n";
        System.out.printf(format, "", "", "", "per layer", "", "end to end", "", "vs torch", "", "");
        System.out.printf(format, "layer", "type", "shape", "max|diff|", "ulp", "max|diff|", "ulp",
                "max|diff|", "of atol", "status");
        int failed = 0;
        long oneUlpValues = 0;
        for (Layer layer : graph.layers) {
            LayerResult r = results.get(layer.name);
            boolean expLayer = EXP_LAYER_TYPES.contains(layer.type());
            boolean ok = r.passes(expLayer);
            long offByOne = r.perLayer.mismatches + r.endToEnd.mismatches;
            String status = !ok ? "FAIL" : offByOne == 0 ? "ok" : "ok (" + offByOne + " values 1 ulp off)";
            if (!ok) {
                failed++;
            } else {
                oneUlpValues += offByOne;
            }
            System.out.printf(format, layer.name, layer.type(), Tensor.shapeString(graph.shapes.get(layer.name)),
                    number(r.perLayer.maxAbs), ulps(r.perLayer.maxUlp), number(r.endToEnd.maxAbs),
                    ulps(r.endToEnd.maxUlp), r.torchChecked ? number(r.torchMaxAbs) : "-",
                    r.torchChecked ? String.format("%.2f%%", 100 * r.torchWorstRatio) : "-", status);
        }
        if (failed == 0) {
            System.out.printf("PASS: %d layers bit-exact with pdinfer's reference (%d values of exp/tanh "
                    + "layers 1 ulp off)%s%n", graph.layers.size(), oneUlpValues,
                    golden.hasTorch ? String.format(", within %.0e x max(1, max|torch|) of torch", golden.torchAtolFactor) : "");
        } else {
            System.out.printf("FAIL: %d of %d layers do not match%n", failed, graph.layers.size());
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
