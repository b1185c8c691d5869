import { IsInt, IsString, Min } from 'class-validator';

export class CheckoutInput {
  @IsString()
  orderId!: string;

  @IsInt()
  @Min(1)
  amountCents!: number;
}
