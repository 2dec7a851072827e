"""Bad input raises an error that names the op, the shapes and the rule, before any work."""

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F


def t(shape, dtype="float32"):
    return tinyres.Tensor(np.ones(shape), dtype=dtype)


def test_conv2d_channel_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels \(shape \(2, 3, 8, 8\)\) but weight \(4, 5, 3, 3\) expects 5"):
        F.conv2d(t((2, 3, 8, 8)), t((4, 5, 3, 3)))


def test_conv2d_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel 5x5 is larger than the padded input 4x4 \(input 2x2, padding \(1, 1\)\)"):
        F.conv2d(t((1, 1, 2, 2)), t((1, 1, 5, 5)), padding=1)


def test_conv2d_needs_4d_input_and_valid_stride():
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D .* got shape \(3, 8, 8\)"):
        F.conv2d(t((3, 8, 8)), t((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="conv2d: need stride >= 1"):
        F.conv2d(t((1, 3, 8, 8)), t((4, 3, 3, 3)), stride=0)
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair"):
        F.conv2d(t((1, 3, 8, 8)), t((4, 3, 3, 3)), stride=1.5)


def test_conv2d_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(t((1, 3, 8, 8)), t((4, 3, 3, 3)), t((3,)))


def test_mixed_dtypes_are_refused_not_upcast():
    with pytest.raises(TypeError, match="conv2d: inputs have different dtypes \\(float32 and float64\\)"):
        F.conv2d(t((1, 3, 8, 8), "float64"), t((4, 3, 3, 3)))
    with pytest.raises(TypeError, match="matmul: inputs have different dtypes"):
        t((2, 2)) @ t((2, 2), "float64")


def test_matmul_shape_mismatch():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not multiply"):
        t((2, 3)) @ t((4, 5))


def test_linear_shape_mismatch():
    with pytest.raises(ValueError, match=r"linear: input \(2, 3\) and weight \(4, 5\) do not fit"):
        F.linear(t((2, 3)), t((4, 5)))


def test_cross_entropy_labels_out_of_range():
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be in \[0, 10\), got values from 0 to 10"):
        F.cross_entropy(t((2, 10)), np.array([0, 10]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be in \[0, 10\), got values from -1"):
        F.cross_entropy(t((2, 10)), np.array([-1, 3]))


def test_cross_entropy_label_shape_and_type():
    with pytest.raises(ValueError, match=r"cross_entropy: labels must have shape \(2,\)"):
        F.cross_entropy(t((2, 10)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="cross_entropy: labels must be an integer array, got float"):
        F.cross_entropy(t((2, 10)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be \(batch, classes\)"):
        F.cross_entropy(t((2, 10, 1)), np.array([0, 1]))


def test_cross_entropy_labels_on_another_backend():
    logits = tinyres.Tensor(np.ones((2, 3)), backend="strict")
    with pytest.raises(ValueError, match="labels are a numpy.ndarray but logits live on backend 'strict'"):
        F.cross_entropy(logits, np.array([0, 1]))


def test_batch_norm_shape_errors():
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\) for input \(2, 3, 4, 4\)"):
        F.batch_norm(t((2, 3, 4, 4)), None, None, t((4,)), t((3,)), True)
    with pytest.raises(ValueError, match="batch_norm: training needs more than one value per channel"):
        F.batch_norm(t((1, 3, 1, 1)), None, None, t((3,)), t((3,)), True)


def test_pooling_errors():
    with pytest.raises(ValueError, match="max_pool2d: padding .* must be at most half the kernel"):
        F.max_pool2d(t((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: window .* is larger than the padded input"):
        F.avg_pool2d(t((1, 1, 2, 2)), 3)


def test_reshape_and_transpose_errors():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4,\)"):
        t((2, 3)).reshape(4)
    with pytest.raises(ValueError, match="transpose: axes .* are not a permutation"):
        t((2, 3)).transpose(0, 0)


def test_only_float32_and_float64_are_floating_dtypes():
    with pytest.raises(TypeError, match="floating dtype must be float32 or float64, got float16"):
        tinyres.Tensor(np.ones(2), dtype="float16")
    with pytest.raises(TypeError, match="astype: tinyres computes in float32 or float64, got float16"):
        F.astype(t((2,)), "float16")


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only float32/float64 tensors can require gradients"):
        tinyres.Tensor(np.array([1, 2]), requires_grad=True)


def test_gradcheck_refuses_float32_and_reports_the_wrong_element():
    with pytest.raises(ValueError, match="central differences need float64"):
        tinyres.gradcheck(lambda x: x * 2.0, [tinyres.Tensor(np.ones(3), requires_grad=True)])

    def wrong_square(x):  # claims d(x^2)/dx = x instead of 2x
        data = x.data
        return tinyres.Tensor.from_op("wrong_square", data * data, lambda g: (g * data,), x)

    x = tinyres.Tensor(np.array([1.0, 2.0]), requires_grad=True, dtype="float64")
    with pytest.raises(tinyres.GradcheckError, match=r"input 0 \(shape \(2,\)\) is wrong at element \((0|1),\): backward gives"):
        tinyres.gradcheck(wrong_square, [x])


def test_out_of_range_axes_are_errors_not_wrapped_around():
    x = t((2, 3))
    with pytest.raises(ValueError, match=r"transpose: axes \(1, 2\) are out of range for a 2-D tensor"):
        x.transpose(1, 2)
    with pytest.raises(ValueError, match="concat: axis 2 is out of range for 2-D tensors"):
        F.concat([x, x], axis=2)
    with pytest.raises(ValueError, match="concat: axis -3"):
        F.concat([x, x], axis=-3)


def test_batch_norm_needs_both_running_statistics_and_a_momentum_in_0_1():
    x, ones = t((2, 3, 2, 2)), t((3,))
    with pytest.raises(ValueError, match="both running_mean and running_var, or neither"):
        F.batch_norm(x, np.zeros(3, np.float32), None, ones, ones, training=True)
    with pytest.raises(ValueError, match="momentum must be a number between 0 and 1, got None"):
        F.batch_norm(x, None, None, ones, ones, training=True, momentum=None)


def leaf(values):
    return tinyres.Tensor(np.array(values, dtype=np.float64), requires_grad=True, dtype="float64")


def test_gradcheck_fails_when_the_function_is_nan():
    def nan_everywhere(x):  # forward NaN, backward claims a gradient of 1
        d = x.data
        return tinyres.Tensor.from_op("nan", (d - d) / (d - d), lambda g: (g,), x)

    with pytest.raises(tinyres.GradcheckError, match="central differences give nan"), np.errstate(invalid="ignore"):
        tinyres.gradcheck(nan_everywhere, [leaf([1.0, 2.0])])


def test_gradcheck_restores_the_input_when_fn_raises():
    array = np.array([1.0, 2.0, 3.0])
    x = tinyres.Tensor(array, requires_grad=True, dtype="float64")  # shares `array`
    calls = {"n": 0}

    def fails_on_the_third_call(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return x * 2.0

    with pytest.raises(RuntimeError, match="boom"):
        tinyres.gradcheck(fails_on_the_third_call, [x])
    assert array.tolist() == [1.0, 2.0, 3.0]


def test_gradcheck_messages_name_the_right_input_and_the_real_cause():
    def scale_in_place(k, x):
        x.data[0] = 9.0
        return x * k

    with pytest.raises(tinyres.GradcheckError, match="fn changed input 1 in place"):
        tinyres.gradcheck(scale_in_place, [2.0, leaf([1.0, 2.0])])
    with pytest.raises(ValueError, match="input 0 was computed by an op.*pass a leaf"):
        tinyres.gradcheck(lambda x: x * 2.0, [leaf([1.0]) * 3.0])
    with pytest.raises(ValueError, match="fn returned float32 from float64 inputs"):
        tinyres.gradcheck(lambda x: x.astype("float32"), [leaf([1.0])])


def test_gradcheck_accepts_correct_edge_cases():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    assert tinyres.gradcheck(lambda a, b: a * b, [x, x])  # one tensor twice: one summed gradient
    assert tinyres.gradcheck(lambda a, b: a * 2.0, [x, y])  # no path to y: a zero gradient
    many = tinyres.Tensor(np.linspace(-1, 1, 50), requires_grad=True, dtype="float64")
    assert tinyres.gradcheck(lambda a: a + 1e6, [many])  # large outputs do not drown the difference
