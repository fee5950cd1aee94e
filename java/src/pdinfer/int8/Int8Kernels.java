package pdinfer.int8;

import pdinfer.Tensor;
import pdinfer.layers.Window;

/**
 * The integer reference kernels (pdinfer/kernels/integer.py, docs/KERNELS.md "Int8 computation"),
 * NCHW. Sums are exact int32 (the steps' constants guarantee no overflow, so their order does not
 * matter); the one float operation of an output is its requantization, a float32 product.
 */
final class Int8Kernels {
    private Int8Kernels() {
    }

    /** q = clamp(zeroPoint + rint(x / scale), 0, 255), one float32 division. */
    static QTensor quantize(Tensor x, Quantization quantization) {
        Requant whole = Requant.whole(quantization.zeroPoint());
        byte[] out = new byte[x.data.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) whole.apply(x.data[i] / quantization.scale());
        }
        return new QTensor(x.shape, out, quantization);
    }

    /** y = scale * float32(q - zeroPoint), one float32 multiply. */
    static Tensor dequantize(QTensor q) {
        float scale = q.quantization.scale();
        int zeroPoint = q.quantization.zeroPoint();
        float[] out = new float[q.data.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = scale * (float) (q.level(i) - zeroPoint);
        }
        return new Tensor(q.shape, out);
    }

    /**
     * Conv2d with the input's zero point as its padding: acc = bias[co] + sum over in-bounds taps of
     * (x - x.zeroPoint) * weight (input channel, kernel row, kernel column), then
     * requantize(float32(acc) * multiplier[co]). weight: (Co, Ci/groups, KH, KW) int8.
     */
    static QTensor conv2d(QTensor x, byte[] weight, int outChannels, int groups, Window window, int[] bias,
                          float[] multiplier, Requant requant, Quantization out, int outH, int outW) {
        int batch = x.shape[0];
        int inChannels = x.shape[1];
        int inH = x.shape[2];
        int inW = x.shape[3];
        int groupIn = inChannels / groups;
        int groupOut = outChannels / groups;
        int kernelH = window.kernelH();
        int kernelW = window.kernelW();
        int zeroPoint = x.quantization.zeroPoint();
        byte[] result = new byte[batch * outChannels * outH * outW];
        int o = 0;
        for (int n = 0; n < batch; n++) {
            for (int co = 0; co < outChannels; co++) {
                int ciBase = (co / groupOut) * groupIn;
                for (int oy = 0; oy < outH; oy++) {
                    for (int ox = 0; ox < outW; ox++) {
                        int acc = bias[co];
                        for (int ci = 0; ci < groupIn; ci++) {
                            int plane = (n * inChannels + ciBase + ci) * inH;
                            int taps = (co * groupIn + ci) * kernelH;
                            for (int ky = 0; ky < kernelH; ky++) {
                                int iy = oy * window.strideH() - window.padTop() + ky * window.dilationH();
                                if (iy < 0 || iy >= inH) {
                                    continue; // padding holds the real 0: it adds nothing
                                }
                                for (int kx = 0; kx < kernelW; kx++) {
                                    int ix = ox * window.strideW() - window.padLeft() + kx * window.dilationW();
                                    if (ix < 0 || ix >= inW) {
                                        continue;
                                    }
                                    acc += (x.level((plane + iy) * inW + ix) - zeroPoint)
                                            * weight[(taps + ky) * kernelW + kx];
                                }
                            }
                        }
                        result[o++] = (byte) requant.apply((float) acc * multiplier[co]);
                    }
                }
            }
        }
        return new QTensor(new int[] {batch, outChannels, outH, outW}, result, out);
    }

    /** MaxPool2d on levels: the largest in-bounds tap (0 for a window of padding only), same quantization. */
    static QTensor maxPool2d(QTensor x, Window window, int outH, int outW) {
        int planes = x.shape[0] * x.shape[1];
        int inH = x.shape[2];
        int inW = x.shape[3];
        byte[] result = new byte[planes * outH * outW];
        int o = 0;
        for (int plane = 0; plane < planes; plane++) {
            for (int oy = 0; oy < outH; oy++) {
                for (int ox = 0; ox < outW; ox++) {
                    int best = 0;
                    for (int ky = 0; ky < window.kernelH(); ky++) {
                        int iy = oy * window.strideH() - window.padTop() + ky * window.dilationH();
                        if (iy < 0 || iy >= inH) {
                            continue;
                        }
                        for (int kx = 0; kx < window.kernelW(); kx++) {
                            int ix = ox * window.strideW() - window.padLeft() + kx * window.dilationW();
                            if (ix >= 0 && ix < inW && x.level((plane * inH + iy) * inW + ix) > best) {
                                best = x.level((plane * inH + iy) * inW + ix);
                            }
                        }
                    }
                    result[o++] = (byte) best;
                }
            }
        }
        return new QTensor(new int[] {x.shape[0], x.shape[1], outH, outW}, result, x.quantization);
    }

    /** Mean over H and W: requantize(float32(sum of (x - x.zeroPoint)) * multiplier), the sum y then x. */
    static QTensor globalAvgPool(QTensor x, float multiplier, Requant requant, Quantization out, int[] outShape) {
        int planes = x.shape[0] * x.shape[1];
        int plane = x.shape[2] * x.shape[3];
        int zeroPoint = x.quantization.zeroPoint();
        byte[] result = new byte[planes];
        for (int p = 0; p < planes; p++) {
            int acc = 0;
            for (int i = p * plane; i < (p + 1) * plane; i++) {
                acc += x.level(i) - zeroPoint;
            }
            result[p] = (byte) requant.apply((float) acc * multiplier);
        }
        return new QTensor(outShape, result, out);
    }

    /** a + b: requantize(float32(a - a.zp) * aMultiplier + float32(b - b.zp) * bMultiplier), two products, then the sum. */
    static QTensor add(QTensor a, float aMultiplier, QTensor b, float bMultiplier, Requant requant, Quantization out) {
        int aZero = a.quantization.zeroPoint();
        int bZero = b.quantization.zeroPoint();
        byte[] result = new byte[a.data.length];
        for (int i = 0; i < result.length; i++) {
            float va = (float) (a.level(i) - aZero) * aMultiplier;
            float vb = (float) (b.level(i) - bZero) * bMultiplier;
            result[i] = (byte) requant.apply(va + vb); // never Math.fma
        }
        return new QTensor(a.shape, result, out);
    }
}
