package pdinfer.layers;

import java.util.List;
import java.util.Map;

import pdinfer.Tensor;

/**
 * GELU in double, one rounding: 0.5 * x * (1 + erf(x / sqrt 2)) for approximate "none", or
 * 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) for "tanh". Any shape. erf is fdlibm's
 * s_erf.c, ported step for step as in pdinfer/kernels/reference.py.
 */
public final class GELU extends Layer {
    private static final double SQRT_HALF = 0.7071067811865476; // double(1 / sqrt 2)
    private static final double SQRT_2_OVER_PI = 0.7978845608028654; // double(sqrt(2 / pi))

    private boolean approximateTanh;

    public GELU(String name, List<String> inputs) {
        super(name, inputs);
    }

    @Override
    public String type() {
        return "GELU";
    }

    @Override
    public List<String> paramNames() {
        return List.of("approximate");
    }

    @Override
    public void loadParam(Map<String, Object> params) {
        super.loadParam(params);
        Object approximate = params.get("approximate");
        if (!"none".equals(approximate) && !"tanh".equals(approximate)) {
            throw unsupported("param 'approximate' must be \"none\" or \"tanh\", got " + approximate);
        }
        approximateTanh = "tanh".equals(approximate);
    }

    @Override
    public Tensor forward(Tensor... xs) {
        float[] in = xs[0].data;
        float[] out = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            double v = in[i];
            if (approximateTanh) {
                double inner = SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v));
                out[i] = (float) (0.5 * v * (1.0 + StrictMath.tanh(inner)));
            } else {
                out[i] = (float) (0.5 * v * (1.0 + erf(v * SQRT_HALF)));
            }
        }
        return new Tensor(xs[0].shape, out);
    }

    // fdlibm 5.3 s_erf.c (erf only). The high-word tests `ix < 0x...` are written as |x| < the
    // double whose high word that is (low word 0), as in the Python port.
    private static final double ERX = 8.45062911510467529297e-01;
    private static final double EFX = 1.28379167095512586316e-01;
    private static final double EFX8 = 1.02703333676410069053e+00;
    private static final double[] PP = {1.28379167095512558561e-01, -3.25042107247001499370e-01,
        -2.84817495755985104766e-02, -5.77027029648944159157e-03, -2.37630166566501626084e-05};
    private static final double[] QQ = {3.97917223959155352819e-01, 6.50222499887672944485e-02,
        5.08130628187576562776e-03, 1.32494738004321644526e-04, -3.96022827877536812320e-06};
    private static final double[] PA = {-2.36211856075265944077e-03, 4.14856118683748331666e-01,
        -3.72207876035701323847e-01, 3.18346619901161753674e-01, -1.10894694282396677476e-01,
        3.54783043256182359371e-02, -2.16637559486879084300e-03};
    private static final double[] QA = {1.06420880400844228286e-01, 5.40397917702171048937e-01,
        7.18286544141962662868e-02, 1.26171219808761642112e-01, 1.36370839120290507362e-02,
        1.19844998467991074170e-02};
    private static final double[] RA = {-9.86494403484714822705e-03, -6.93858572707181764372e-01,
        -1.05586262253232909814e+01, -6.23753324503260060396e+01, -1.62396669462573470355e+02,
        -1.84605092906711035994e+02, -8.12874355063065934246e+01, -9.81432934416914548592e+00};
    private static final double[] SA = {1.96512716674392571292e+01, 1.37657754143519042600e+02,
        4.34565877475229228821e+02, 6.45387271733267880336e+02, 4.29008140027567833386e+02,
        1.08635005541779435134e+02, 6.57024977031928170135e+00, -6.04244152148580987438e-02};
    private static final double[] RB = {-9.86494292470009928597e-03, -7.99283237680523006574e-01,
        -1.77579549177547519889e+01, -1.60636384855821916062e+02, -6.37566443368389627722e+02,
        -1.02509513161107724954e+03, -4.83519191608651397019e+02};
    private static final double[] SB = {3.03380607434824582924e+01, 3.25792512996573918826e+02,
        1.53672958608443695994e+03, 3.19985821950859553908e+03, 2.55305040643316442583e+03,
        4.74528541206955367215e+02, -2.24409524465858183362e+01};
    private static final double ERF_UNDERFLOW = 0x1p-1015; // high word 0x00800000
    private static final double ERF_TINY = 0x1p-28; // 0x3e300000
    private static final double ERF_SMALL = 0.84375; // 0x3feb0000
    private static final double ERF_MID = 1.25; // 0x3ff40000
    private static final double ERF_BIG = 6.0; // 0x40180000
    private static final double ERF_SPLIT = 0x1.6db6ep+1; // 0x4006DB6E: 1/0.35

    /** fdlibm's erf, step for step. */
    static double erf(double x) {
        if (Double.isNaN(x)) {
            return x;
        }
        double ax = Math.abs(x);
        if (ax >= ERF_BIG) {
            return x > 0 ? 1.0 - 1e-300 : 1e-300 - 1.0;
        }
        if (ax < ERF_SMALL) {
            if (ax < ERF_TINY) {
                if (ax < ERF_UNDERFLOW) {
                    return 0.125 * (8.0 * x + EFX8 * x);
                }
                return x + EFX * x;
            }
            double z = x * x;
            double r = PP[0] + z * (PP[1] + z * (PP[2] + z * (PP[3] + z * PP[4])));
            double s = 1.0 + z * (QQ[0] + z * (QQ[1] + z * (QQ[2] + z * (QQ[3] + z * QQ[4]))));
            return x + x * (r / s);
        }
        if (ax < ERF_MID) {
            double s = ax - 1.0;
            double p = PA[0] + s * (PA[1] + s * (PA[2] + s * (PA[3] + s * (PA[4] + s * (PA[5] + s * PA[6])))));
            double q = 1.0 + s * (QA[0] + s * (QA[1] + s * (QA[2] + s * (QA[3] + s * (QA[4] + s * QA[5])))));
            return x >= 0 ? ERX + p / q : -ERX - p / q;
        }
        double s = 1.0 / (ax * ax);
        double r;
        double t;
        if (ax < ERF_SPLIT) {
            r = RA[0] + s * (RA[1] + s * (RA[2] + s * (RA[3] + s * (RA[4] + s * (RA[5] + s * (RA[6] + s * RA[7]))))));
            t = 1.0 + s * (SA[0] + s * (SA[1] + s * (SA[2] + s * (SA[3] + s * (SA[4] + s * (SA[5]
                    + s * (SA[6] + s * SA[7])))))));
        } else {
            r = RB[0] + s * (RB[1] + s * (RB[2] + s * (RB[3] + s * (RB[4] + s * (RB[5] + s * RB[6])))));
            t = 1.0 + s * (SB[0] + s * (SB[1] + s * (SB[2] + s * (SB[3] + s * (SB[4] + s * (SB[5] + s * SB[6]))))));
        }
        double z = Double.longBitsToDouble(Double.doubleToRawLongBits(ax) & 0xffffffff00000000L); // low word 0
        double e = StrictMath.exp(-z * z - 0.5625) * StrictMath.exp((z - ax) * (z + ax) + r / t);
        return x >= 0 ? 1.0 - e / ax : e / ax - 1.0;
    }
}
