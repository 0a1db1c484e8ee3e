//! Initializer <-> array: decoding float tables from any storage form, encoding new tensors.

use bytes::Bytes;
use half::{bf16, f16};
use ndarray::Array2;

use super::proto::{TensorProto, tensor_proto::DataType};
use crate::error::{Error, Result};

/// The float element types a table may have. All are read as f32; new tensors are written in
/// the table's own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatType {
    F32,
    F16,
    Bf16,
    F64,
}

impl FloatType {
    /// The float type of an ONNX `data_type` code, if it is one we read.
    pub fn from_code(code: i32) -> Option<FloatType> {
        match DataType::try_from(code).ok()? {
            DataType::Float => Some(FloatType::F32),
            DataType::Float16 => Some(FloatType::F16),
            DataType::Bfloat16 => Some(FloatType::Bf16),
            DataType::Double => Some(FloatType::F64),
            _ => None,
        }
    }

    /// The ONNX `data_type` code.
    pub fn code(self) -> i32 {
        (match self {
            FloatType::F32 => DataType::Float,
            FloatType::F16 => DataType::Float16,
            FloatType::Bf16 => DataType::Bfloat16,
            FloatType::F64 => DataType::Double,
        }) as i32
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FloatType::F16 | FloatType::Bf16 => 2,
            FloatType::F32 => 4,
            FloatType::F64 => 8,
        }
    }
}

/// The ONNX name of a `data_type` code (`FLOAT`, `INT64`, ...).
pub fn dtype_name(code: i32) -> String {
    DataType::try_from(code).map_or_else(|_| format!("unknown type {code}"), |d| d.as_str_name().to_string())
}

/// Bytes per element of a fixed-size ONNX type, `None` for strings and sub-byte types.
pub fn dtype_size(code: i32) -> Option<usize> {
    use DataType::*;
    Some(match DataType::try_from(code).ok()? {
        Uint8 | Int8 | Bool | Float8e4m3fn | Float8e4m3fnuz | Float8e5m2 | Float8e5m2fnuz | Float8e8m0 => 1,
        Uint16 | Int16 | Float16 | Bfloat16 => 2,
        Float | Int32 | Uint32 => 4,
        Double | Int64 | Uint64 | Complex64 => 8,
        Complex128 => 16,
        _ => return None,
    })
}

/// Number of elements of a tensor with these dims; an error for negative dims or overflow.
pub fn element_count(name: &str, dims: &[i64]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)).ok_or_else(|| Error::Tensor {
            tensor: name.into(),
            reason: format!("dims {dims:?} do not describe a tensor that fits in memory"),
        })
    })
}

/// Bytes of data a tensor holds (element count times element size), for reports.
pub fn data_bytes(t: &TensorProto) -> u64 {
    let count = element_count(t.name(), &t.dims).unwrap_or(0) as u64;
    count.saturating_mul(dtype_size(t.data_type()).unwrap_or(0) as u64) // dims may be absurd
}

/// Reads a rank-2 float initializer (f32, f16, bf16 or f64; raw or typed storage) as f32.
///
/// Shape: `[dims[0], dims[1]]`. The stored size is checked against the dims before any
/// allocation, so a lying header fails cleanly.
pub fn float_matrix(t: &TensorProto) -> Result<Array2<f32>> {
    if t.dims.len() != 2 {
        let reason = format!("expected a rank-2 table, found dims {:?}", t.dims);
        return Err(Error::Tensor { tensor: t.name().into(), reason });
    }
    let data = float_values(t)?;
    let (rows, cols) = (t.dims[0] as usize, t.dims[1] as usize);
    Ok(Array2::from_shape_vec((rows, cols), data).expect("length checked against dims"))
}

/// Reads a float initializer of any rank (f32, f16, bf16 or f64; raw or typed storage) as f32
/// values, row-major. The stored size is checked against the dims before any allocation.
pub fn float_values(t: &TensorProto) -> Result<Vec<f32>> {
    let name = t.name();
    let fail = |reason: String| Error::Tensor { tensor: name.into(), reason };
    let dtype = FloatType::from_code(t.data_type())
        .ok_or_else(|| fail(format!("data type {} is not a float type", dtype_name(t.data_type()))))?;
    let count = element_count(name, &t.dims)?;
    Ok(if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty() || count == 0) {
        let want = count.checked_mul(dtype.size()).ok_or_else(|| {
            fail(format!("dims {:?} of {} need more bytes than memory holds", t.dims, dtype_name(t.data_type())))
        })?;
        if raw.len() != want {
            return Err(fail(format!(
                "raw_data holds {} bytes but dims {:?} of {} need {want}",
                raw.len(),
                t.dims,
                dtype_name(t.data_type())
            )));
        }
        match dtype {
            FloatType::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            FloatType::F16 => raw.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            FloatType::Bf16 => raw.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            FloatType::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
                .collect(),
        }
    } else {
        let typed_len = match dtype {
            FloatType::F32 => t.float_data.len(),
            FloatType::F16 | FloatType::Bf16 => t.int32_data.len(),
            FloatType::F64 => t.double_data.len(),
        };
        if typed_len != count {
            return Err(fail(format!(
                "holds {typed_len} values in its typed field but dims {:?} need {count}",
                t.dims
            )));
        }
        match dtype {
            FloatType::F32 => t.float_data.clone(),
            FloatType::F16 => t.int32_data.iter().map(|&b| f16::from_bits(b as u16).to_f32()).collect(),
            FloatType::Bf16 => t.int32_data.iter().map(|&b| bf16::from_bits(b as u16).to_f32()).collect(),
            FloatType::F64 => t.double_data.iter().map(|&v| v as f32).collect(),
        }
    })
}

/// A float tensor of type `dtype` holding `data` (row-major, `dims` product long) in raw_data.
pub fn float_tensor(name: &str, dims: &[usize], data: &[f32], dtype: FloatType) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let mut raw = Vec::with_capacity(data.len() * dtype.size());
    for &v in data {
        match dtype {
            FloatType::F32 => raw.extend_from_slice(&v.to_le_bytes()),
            FloatType::F16 => raw.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            FloatType::Bf16 => raw.extend_from_slice(&bf16::from_f32(v).to_le_bytes()),
            FloatType::F64 => raw.extend_from_slice(&(v as f64).to_le_bytes()),
        }
    }
    raw_tensor(name, dims, dtype.code(), raw)
}

/// An int32 tensor holding `data` (row-major) in raw_data.
pub fn int32_tensor(name: &str, dims: &[usize], data: &[i32]) -> TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Int32 as i32, raw)
}

/// A uint16 tensor holding `data` (row-major) in raw_data.
pub fn uint16_tensor(name: &str, dims: &[usize], data: &[u16]) -> TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Uint16 as i32, raw)
}

/// An int64 tensor holding `data` (row-major) in raw_data.
pub fn int64_tensor(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Int64 as i32, raw)
}

/// A uint8 (or, when `signed`, int8: the same bytes read as two's complement) tensor holding
/// `data` (row-major) in raw_data.
pub fn byte_tensor(name: &str, dims: &[usize], data: &[u8], signed: bool) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let code = if signed { DataType::Int8 } else { DataType::Uint8 };
    raw_tensor(name, dims, code as i32, data.to_vec())
}

/// An f16 tensor holding `data` (row-major) in raw_data.
pub fn f16_tensor(name: &str, dims: &[usize], data: &[f16]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Float16 as i32, raw)
}

fn raw_tensor(name: &str, dims: &[usize], code: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(code),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<f32> {
        vec![1.0, -2.5, 0.125, 3.0, 0.0, -0.75]
    }

    #[test]
    fn raw_f32_f16_bf16_f64_read_back() {
        for dtype in [FloatType::F32, FloatType::F16, FloatType::Bf16, FloatType::F64] {
            let t = float_tensor("w", &[2, 3], &table(), dtype);
            let m = float_matrix(&t).unwrap();
            assert_eq!(m.shape(), &[2, 3]);
            // every value is exactly representable in all four types
            assert_eq!(m.iter().copied().collect::<Vec<_>>(), table(), "{dtype:?}");
        }
    }

    #[test]
    fn typed_fields_read_back() {
        let dims = vec![2, 3];
        let f32_t = TensorProto {
            name: Some("a".into()),
            dims: dims.clone(),
            data_type: Some(DataType::Float as i32),
            float_data: table(),
            ..Default::default()
        };
        let f16_t = TensorProto {
            data_type: Some(DataType::Float16 as i32),
            float_data: vec![],
            int32_data: table().iter().map(|&v| f16::from_f32(v).to_bits() as i32).collect(),
            ..f32_t.clone()
        };
        let bf16_t = TensorProto {
            data_type: Some(DataType::Bfloat16 as i32),
            int32_data: table().iter().map(|&v| bf16::from_f32(v).to_bits() as i32).collect(),
            ..f16_t.clone()
        };
        let f64_t = TensorProto {
            data_type: Some(DataType::Double as i32),
            double_data: table().iter().map(|&v| v as f64).collect(),
            ..f16_t.clone()
        };
        for t in [f32_t, f16_t, bf16_t, f64_t] {
            assert_eq!(float_matrix(&t).unwrap().iter().copied().collect::<Vec<_>>(), table());
        }
    }

    #[test]
    fn wrong_sizes_and_types_are_named() {
        let mut t = float_tensor("emb", &[2, 3], &table(), FloatType::F32);
        t.dims = vec![2, 4];
        let e = float_matrix(&t).unwrap_err().to_string();
        assert!(e.contains("'emb'") && e.contains("24 bytes") && e.contains("need 32"), "{e}");

        t.dims = vec![i64::MAX, 4];
        let e = float_matrix(&t).unwrap_err().to_string();
        assert!(e.contains("'emb'") && e.contains("fits in memory"), "{e}");

        let ints = int64_tensor("ids", &[2, 1], &[1, 2]);
        let e = float_matrix(&ints).unwrap_err().to_string();
        assert!(e.contains("'ids'") && e.contains("INT64 is not a float type"), "{e}");

        let rank1 = float_tensor("b", &[6], &table(), FloatType::F32);
        assert!(float_matrix(&rank1).unwrap_err().to_string().contains("rank-2"));
    }

    #[test]
    fn absurd_dims_fail_before_allocating() {
        // 2^80 elements: the count overflows.
        let mut t = float_tensor("emb", &[2, 3], &table(), FloatType::F32);
        t.dims = vec![1 << 40, 1 << 40];
        let e = float_matrix(&t).unwrap_err().to_string();
        assert!(e.contains("'emb'") && e.contains("[1099511627776, 1099511627776]") && e.contains("fits in memory"), "{e}");
        // 2^60 elements would fit the count; the 24 bytes held do not.
        t.dims = vec![1 << 40, 1 << 20];
        let e = float_matrix(&t).unwrap_err().to_string();
        assert!(e.contains("raw_data holds 24 bytes") && e.contains("need 4611686018427387904"), "{e}");
        // the same in the typed field
        t.raw_data = None;
        t.float_data = table();
        let e = float_matrix(&t).unwrap_err().to_string();
        assert!(e.contains("holds 6 values in its typed field") && e.contains("need 1152921504606846976"), "{e}");
        // sizes for reports saturate instead of overflowing: 2^62 f64 elements
        t.dims = vec![1 << 31, 1 << 31];
        t.data_type = Some(DataType::Double as i32);
        assert_eq!(data_bytes(&t), u64::MAX);
    }

    #[test]
    fn int_tensors_are_little_endian() {
        let t = int32_tensor("m", &[2], &[1, -2]);
        assert_eq!(t.raw_data.unwrap().as_ref(), &[1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(data_bytes(&int64_tensor("m", &[3], &[0, 1, 2])), 24);
    }
}
