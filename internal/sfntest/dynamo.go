package sfntest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// unsupportedError: a parameter the harness does not pass on; Step
// Functions would, so the test is told.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

// dynamoParams are the parameters of the dynamodb:* integrations that the
// harness passes on, by resource. Step Functions takes the API's own
// request shape (DynamoDB JSON attribute values).
var dynamoParams = map[string][]string{
	ResourceDynamoDBGetItem:    {"TableName", "Key", "ConsistentRead", "ProjectionExpression", "ExpressionAttributeNames"},
	ResourceDynamoDBPutItem:    {"TableName", "Item", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValues"},
	ResourceDynamoDBUpdateItem: {"TableName", "Key", "UpdateExpression", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValues"},
	ResourceDynamoDBDeleteItem: {"TableName", "Key", "ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValues"},
}

// dynamoCall runs a dynamodb:* integration with the SDK and returns its
// response in the API's JSON shape.
func dynamoCall(ctx context.Context, db DynamoDB, resource string, input json.RawMessage) (json.RawMessage, error) {
	var p params
	dec := json.NewDecoder(bytesReader(input))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, &TaskError{Name: "DynamoDB.ValidationException", Cause: err.Error()}
	}
	allowed := dynamoParams[resource]
	for k := range p {
		if !slices.Contains(allowed, k) {
			return nil, &unsupportedError{fmt.Sprintf("%s parameter %s is not passed on by sfntest (it passes %s)", resource, k, strings.Join(allowed, ", "))}
		}
	}
	var errs []error
	str := func(k string) *string {
		v, ok := p[k]
		if !ok {
			return nil
		}
		s, ok := v.(string)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: want a string", k))
		}
		return aws.String(s)
	}
	item := func(k string) map[string]types.AttributeValue {
		v, ok := p[k]
		if !ok {
			return nil
		}
		m, err := decodeItem(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return m
	}
	names := func() map[string]string {
		v, ok := p["ExpressionAttributeNames"].(map[string]any)
		if !ok {
			return nil
		}
		out := map[string]string{}
		for k, n := range v {
			s, ok := n.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("ExpressionAttributeNames.%s: want a string", k))
			}
			out[k] = s
		}
		return out
	}
	returnValues := func() types.ReturnValue {
		if s := str("ReturnValues"); s != nil {
			return types.ReturnValue(*s)
		}
		return ""
	}

	var out map[string]any
	switch resource {
	case ResourceDynamoDBGetItem:
		in := &dynamodb.GetItemInput{TableName: str("TableName"), Key: item("Key"), ProjectionExpression: str("ProjectionExpression"), ExpressionAttributeNames: names()}
		if v, ok := p["ConsistentRead"].(bool); ok {
			in.ConsistentRead = aws.Bool(v)
		}
		if len(errs) > 0 {
			break
		}
		res, err := db.GetItem(ctx, in)
		if err != nil {
			return nil, serviceError("DynamoDB", err)
		}
		out = map[string]any{}
		if res.Item != nil {
			out["Item"] = encodeItem(res.Item)
		}
	case ResourceDynamoDBPutItem:
		in := &dynamodb.PutItemInput{TableName: str("TableName"), Item: item("Item"), ConditionExpression: str("ConditionExpression"),
			ExpressionAttributeNames: names(), ExpressionAttributeValues: item("ExpressionAttributeValues"), ReturnValues: returnValues()}
		if len(errs) > 0 {
			break
		}
		res, err := db.PutItem(ctx, in)
		if err != nil {
			return nil, serviceError("DynamoDB", err)
		}
		out = attributes(res.Attributes)
	case ResourceDynamoDBUpdateItem:
		in := &dynamodb.UpdateItemInput{TableName: str("TableName"), Key: item("Key"), UpdateExpression: str("UpdateExpression"),
			ConditionExpression: str("ConditionExpression"), ExpressionAttributeNames: names(),
			ExpressionAttributeValues: item("ExpressionAttributeValues"), ReturnValues: returnValues()}
		if len(errs) > 0 {
			break
		}
		res, err := db.UpdateItem(ctx, in)
		if err != nil {
			return nil, serviceError("DynamoDB", err)
		}
		out = attributes(res.Attributes)
	case ResourceDynamoDBDeleteItem:
		in := &dynamodb.DeleteItemInput{TableName: str("TableName"), Key: item("Key"), ConditionExpression: str("ConditionExpression"),
			ExpressionAttributeNames: names(), ExpressionAttributeValues: item("ExpressionAttributeValues"), ReturnValues: returnValues()}
		if len(errs) > 0 {
			break
		}
		res, err := db.DeleteItem(ctx, in)
		if err != nil {
			return nil, serviceError("DynamoDB", err)
		}
		out = attributes(res.Attributes)
	}
	if len(errs) > 0 {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return nil, &TaskError{Name: "DynamoDB.ValidationException", Cause: strings.Join(msgs, "; ")}
	}
	return json.Marshal(out)
}

type params map[string]any

func attributes(m map[string]types.AttributeValue) map[string]any {
	if len(m) == 0 {
		return map[string]any{}
	}
	return map[string]any{"Attributes": encodeItem(m)}
}

// decodeItem turns a DynamoDB JSON map ({"name": {"S": "x"}}) into
// attribute values.
func decodeItem(v any) (map[string]types.AttributeValue, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map of attribute values, got %T", v)
	}
	out := make(map[string]types.AttributeValue, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		av, err := decodeAttribute(m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

// decodeAttribute turns one DynamoDB JSON attribute value ({"S": "x"},
// {"N": "1"}, {"M": {...}}, ...) into an AttributeValue.
func decodeAttribute(v any) (types.AttributeValue, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, fmt.Errorf("an attribute value is an object with one type key, got %v", v)
	}
	typ, x := onlyEntry(m)
	switch typ {
	case "S", "N":
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s wants a string, got %T", typ, x)
		}
		if typ == "S" {
			return &types.AttributeValueMemberS{Value: s}, nil
		}
		return &types.AttributeValueMemberN{Value: s}, nil
	case "B":
		b, err := decodeBinary(x)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case "BOOL":
		b, ok := x.(bool)
		if !ok {
			return nil, fmt.Errorf("BOOL wants a boolean, got %T", x)
		}
		return &types.AttributeValueMemberBOOL{Value: b}, nil
	case "NULL":
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case "SS", "NS":
		list, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("%s wants a list, got %T", typ, x)
		}
		ss := make([]string, len(list))
		for i, e := range list {
			if ss[i], ok = e.(string); !ok {
				return nil, fmt.Errorf("%s wants strings, got %T", typ, e)
			}
		}
		if typ == "SS" {
			return &types.AttributeValueMemberSS{Value: ss}, nil
		}
		return &types.AttributeValueMemberNS{Value: ss}, nil
	case "BS":
		list, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("BS wants a list, got %T", x)
		}
		bs := make([][]byte, len(list))
		for i, e := range list {
			b, err := decodeBinary(e)
			if err != nil {
				return nil, err
			}
			bs[i] = b
		}
		return &types.AttributeValueMemberBS{Value: bs}, nil
	case "L":
		list, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("L wants a list, got %T", x)
		}
		l := make([]types.AttributeValue, len(list))
		for i, e := range list {
			av, err := decodeAttribute(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			l[i] = av
		}
		return &types.AttributeValueMemberL{Value: l}, nil
	case "M":
		mm, err := decodeItem(x)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberM{Value: mm}, nil
	default:
		return nil, fmt.Errorf("unknown attribute type %q", typ)
	}
}

// onlyEntry returns the entry of a one-entry map.
func onlyEntry(m map[string]any) (string, any) {
	for k, v := range m {
		return k, v
	}
	return "", nil
}

func decodeBinary(x any) ([]byte, error) {
	s, ok := x.(string)
	if !ok {
		return nil, fmt.Errorf("a binary value is a base64 string, got %T", x)
	}
	return base64.StdEncoding.DecodeString(s)
}

// encodeItem is decodeItem's inverse.
func encodeItem(m map[string]types.AttributeValue) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = encodeAttribute(v)
	}
	return out
}

func encodeAttribute(av types.AttributeValue) any {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": v.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": v.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": base64.StdEncoding.EncodeToString(v.Value)}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": v.Value}
	case *types.AttributeValueMemberNS:
		return map[string]any{"NS": v.Value}
	case *types.AttributeValueMemberBS:
		bs := make([]string, len(v.Value))
		for i, b := range v.Value {
			bs[i] = base64.StdEncoding.EncodeToString(b)
		}
		return map[string]any{"BS": bs}
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			l[i] = encodeAttribute(e)
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		return map[string]any{"M": encodeItem(v.Value)}
	}
	return nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
