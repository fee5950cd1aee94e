package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/** Identity at inference; kept so the layer list mirrors the model. */
public final class Dropout extends Layer {
    public Dropout(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "Dropout";
    }

    @Override
    public List<String> paramNames() {
        return List.of("p");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        floatParam(params, "p", 0.0, 1.0, false);
    }

    @Override
    public Tensor forward(Tensor... xs) {
        return xs[0];
    }
}
