package pdinfer.layers;

/**
 * The sliding window of a convolution or pool (pdinfer/kernels/params.py's Window): kernel size,
 * stride, padding (top, left, bottom, right) and dilation.
 */
public record Window(int kernelH, int kernelW, int strideH, int strideW, int padTop, int padLeft, int padBottom,
                     int padRight, int dilationH, int dilationW) {
    /** The window of kernel [kh, kw], stride [sh, sw], padding [top, left, bottom, right], dilation [dh, dw]. */
    static Window of(int[] kernelSize, int[] stride, int[] padding, int[] dilation) {
        return new Window(kernelSize[0], kernelSize[1], stride[0], stride[1], padding[0], padding[1], padding[2],
                padding[3], dilation[0], dilation[1]);
    }
}
