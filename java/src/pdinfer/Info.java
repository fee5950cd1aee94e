package pdinfer;

import java.nio.file.Path;

import pdinfer.layers.Layer;

/**
 * Load and check a weight file or a golden bundle and describe it:
 *
 *   java -cp build pdinfer.Info FILE.pdw
 *
 * Exits 0 if the file passes every check, 2 (with the reason) if not.
 */
public final class Info {
    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: java -cp BUILD pdinfer.Info FILE.pdw");
            System.exit(2);
        }
        Path file = Path.of(args[0]);
        try {
            String format = Container.read(file, true).metadata.get("format");
            if (Golden.FORMAT_NAME.equals(format)) {
                Golden golden = Golden.read(file);
                System.out.printf("golden bundle %s: weights %s (sha256 %s), %d inputs %s, %d layers, torch %s%n",
                        file, golden.info("weights"), golden.info("weights_sha256"), golden.inputCount(),
                        golden.inputKinds, golden.layers.size(), golden.hasTorch ? golden.info("torch_version") : "none");
                return;
            }
            Graph graph = Graph.load(file);
            for (Layer layer : graph.layers) {
                System.out.printf("%-24s %-13s %-30s %s%n", layer.name, layer.type(), String.join(",", layer.inputs),
                        Tensor.shapeString(graph.shapes.get(layer.name)));
            }
            System.out.printf("weights %s: input %s, %d layers, classes %s%n", file,
                    Tensor.shapeString(graph.inputShape), graph.layers.size(), graph.classes);
            if (graph.int8 != null) {
                long int8Steps = graph.int8.steps.stream().filter(step -> step.out != null).count();
                System.out.printf("computes in int8: %d steps, %d of them in int8%n", graph.int8.steps.size(), int8Steps);
            }
        } catch (PdinferException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
        }
    }
}
